# Homolog token dictionary, corpus-wide gene medians, ranked-token corpus.


rule token_dictionary:
    input:
        human="results/references/human_genes.tsv",
        mouse="results/references/mouse_genes.tsv",
        orthologs="results/references/orthologs.tsv",
    output:
        table="results/tokens/dictionary.tsv",
        summary="results/tokens/dictionary_summary.json",
    log:
        "results/logs/tokens/dictionary.log",
    benchmark:
        "results/benchmarks/tokens/dictionary.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        policy=config["tokens"]["homology_policy"],
        min_confidence=config["tokens"].get("min_ortholog_confidence"),
        core_biotypes=config["qc"]["core_biotypes"],
    script:
        "../scripts/token_dictionary.py"


rule gene_histogram:
    input:
        h5ad="results/qc/{sample}.h5ad",
        dictionary="results/tokens/dictionary.tsv",
    output:
        "results/tokens/histograms/{sample}.npz",
    log:
        "results/logs/tokens/histograms/{sample}.log",
    benchmark:
        "results/benchmarks/tokens/histograms/{sample}.tsv"
    conda:
        "../envs/tokens.yaml"
    threads: config["threads"]["tokens"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        species=sample_species,
        target_sum=config["tokens"]["target_sum"],
        chunk_size=config["tokens"]["chunk_size"],
        scheme=config["tokens"].get("scheme", "paper"),
    script:
        "../scripts/gene_histogram.py"


rule gene_medians:
    input:
        histograms=token_outputs("histogram"),
        dictionary="results/tokens/dictionary.tsv",
    output:
        "results/tokens/medians.tsv",
    log:
        "results/logs/tokens/medians.log",
    benchmark:
        "results/benchmarks/tokens/medians.tsv"
    conda:
        "../envs/tokens.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    script:
        "../scripts/gene_medians.py"


rule tokenize:
    input:
        h5ad="results/qc/{sample}.h5ad",
        dictionary="results/tokens/dictionary.tsv",
        medians="results/tokens/medians.tsv",
    output:
        shard="results/tokens/shards/{sample}.arrow",
    log:
        "results/logs/tokens/shards/{sample}.log",
    benchmark:
        "results/benchmarks/tokens/shards/{sample}.tsv"
    conda:
        "../envs/tokens.yaml"
    threads: config["threads"]["tokens"]
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        species=sample_species,
        max_length=config["tokens"]["max_length"],
        target_sum=config["tokens"]["target_sum"],
        chunk_size=config["tokens"]["chunk_size"],
        scheme=config["tokens"].get("scheme", "paper"),
    script:
        "../scripts/tokenize_sample.py"


rule corpus:
    input:
        token_outputs("shard"),
    output:
        corpus=directory("results/corpus/dataset"),
        summary="results/corpus/summary.json",
    log:
        "results/logs/corpus.log",
    benchmark:
        "results/benchmarks/corpus.tsv"
    conda:
        "../envs/tokens.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        validation_fraction=config["tokens"]["validation_fraction"],
        seed=config["seed"],
    script:
        "../scripts/corpus.py"
