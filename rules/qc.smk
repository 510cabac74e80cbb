# Raw-count QC, one job per sample (paper filters; see genecompass/qc.py).


rule qc:
    input:
        counts=sample_counts,
        genes=sample_gene_table,
        hgnc=sample_hgnc,
    output:
        h5ad="results/qc/{sample}.h5ad",
        filters="results/qc/{sample}.filters.tsv",
        genes="results/qc/{sample}.gene_ids.json",
        figure=report(
            "results/qc/{sample}.qc.png",
            caption="../workflow/report/qc.rst",
            category="1. Data and QC",
            subcategory="QC",
            labels={"sample": "{sample}"},
        ),
    log:
        "results/logs/qc/{sample}.log",
    benchmark:
        "results/benchmarks/qc/{sample}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        species=sample_species,
        fmt=lambda wildcards: sample_row(wildcards)["format"],
        genome=lambda wildcards: sample_row(wildcards).get("genome", ""),
        counts=lambda wildcards: sample_row(wildcards).get("counts") or None,
        gene_column=lambda wildcards: sample_row(wildcards).get("gene_column") or None,
        qc=config["qc"],
    script:
        "../scripts/qc.py"


rule qc_summary:
    input:
        qc_outputs("filters"),
    output:
        report(
            "results/qc/summary.tsv",
            caption="../workflow/report/qc_summary.rst",
            category="1. Data and QC",
            subcategory="QC",
            labels={"sample": "all samples"},
        ),
    log:
        "results/logs/qc/summary.log",
    benchmark:
        "results/benchmarks/qc/summary.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/qc_summary.py"


rule qc_figure:
    input:
        qc="results/qc/summary.tsv",
    output:
        report(
            "results/qc/summary.png",
            caption="../workflow/report/summary_qc.rst",
            category="1. Data and QC",
            subcategory="QC",
            labels={"sample": "all samples"},
        ),
    log:
        "results/logs/qc/figure.log",
    benchmark:
        "results/benchmarks/qc/figure.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/qc_figure.py"
