# Reference tables in the workflow's own layouts (docs/formats.md).


rule gene_table:
    input:
        species_gene_table_source,
    output:
        "results/references/{species}_genes.tsv",
    log:
        "results/logs/references/{species}_genes.log",
    benchmark:
        "results/benchmarks/references/{species}_genes.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/gene_table.py"


rule orthologs:
    input:
        reference_file(config["references"]["orthologs"]),
    output:
        "results/references/orthologs.tsv",
    log:
        "results/logs/references/orthologs.log",
    benchmark:
        "results/benchmarks/references/orthologs.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/orthologs.py"


rule download_reference:
    output:
        f"{REFERENCE_CACHE}/{{filename}}",
    log:
        "results/logs/downloads/{filename}.log",
    benchmark:
        "results/benchmarks/downloads/{filename}.tsv"
    wildcard_constraints:
        # Only files some config entry downloads; never anything else in the cache.
        filename="|".join(map(re.escape, downloads())) or "(?!)",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=60,
    params:
        entry=download_params,
        cache=lambda wildcards, output: Path(output[0]).parent,
    script:
        "../scripts/download_reference.py"
