# Prior-knowledge gene embeddings (paper: "Knowledge embedding and incorporation"):
# GRN, gene family and co-expression pairs -> gene2vec; promoters -> DNA BERT;
# all four aligned to the token dictionary in one file.


KNOWLEDGE_KINDS = plan.KNOWLEDGE_KINDS


rule grn_network:
    input:
        networks=network_files,
        genes="results/references/{species}_genes.tsv",
        hgnc=hgnc_for_species,
    output:
        "results/knowledge/inputs/grn_{species}.tsv",
    log:
        "results/logs/knowledge/grn_network_{species}.log",
    benchmark:
        "results/benchmarks/knowledge/grn_network_{species}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        specs=network_specs,
    script:
        "../scripts/grn_network.py"


rule gene_families:
    input:
        hgnc=reference_file(config["references"]["gene_groups"]),
        orthologs="results/references/orthologs.tsv",
    output:
        "results/knowledge/inputs/families_{species}.tsv",
    log:
        "results/logs/knowledge/gene_families_{species}.log",
    benchmark:
        "results/benchmarks/knowledge/gene_families_{species}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/gene_families.py"


rule coexpression_pairs:
    input:
        "results/qc/{sample}.h5ad",
    output:
        pairs="results/knowledge/inputs/coexpression/{sample}.tsv",
        stats="results/knowledge/inputs/coexpression/{sample}.stats.tsv",
    log:
        "results/logs/knowledge/coexpression_{sample}.log",
    benchmark:
        "results/benchmarks/knowledge/coexpression_{sample}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        settings=config["knowledge"]["coexpression"],
        seed=config["seed"],
    script:
        "../scripts/coexpression_pairs.py"


rule gene2vec_embedding:
    input:
        knowledge_pair_inputs,
    output:
        vectors="results/knowledge/{kind}_{species}.safetensors",
        quality="results/knowledge/{kind}_{species}.quality.json",
    log:
        "results/logs/knowledge/{kind}_{species}.log",
    benchmark:
        "results/benchmarks/knowledge/{kind}_{species}.tsv"
    wildcard_constraints:
        kind="grn|family|coexpression",
    conda:
        "../envs/knowledge.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        settings=config["knowledge"],
        seed=config["seed"],
    script:
        "../scripts/gene2vec_embedding.py"


rule promoter_sequences:
    input:
        unpack(promoter_inputs),
    output:
        "results/knowledge/inputs/promoters_{species}.fa",
    log:
        "results/logs/knowledge/promoter_sequences_{species}.log",
    benchmark:
        "results/benchmarks/knowledge/promoter_sequences_{species}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        upstream=500,
        downstream=2000,
    script:
        "../scripts/promoter_sequences.py"


rule promoter_embedding:
    input:
        promoters="results/knowledge/inputs/promoters_{species}.fa",
        families="results/knowledge/inputs/families_{species}.tsv",
    output:
        vectors="results/knowledge/promoter_{species}.safetensors",
        quality="results/knowledge/promoter_{species}.quality.json",
        model=directory("results/knowledge/promoter_model_{species}"),
    log:
        "results/logs/knowledge/promoter_{species}.log",
    benchmark:
        "results/benchmarks/knowledge/promoter_{species}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]["model"]
    resources:
        mem_mb=8000,
        runtime=600,
        gpu=config["knowledge"]["promoter"].get("gpus", 0),
    params:
        settings=config["knowledge"]["promoter"],
        dim=config["knowledge"]["dim"],
        seed=config["seed"],
    script:
        "../scripts/promoter_embedding.py"


rule knowledge:
    input:
        unpack(knowledge_embedding_inputs),
        dictionary="results/tokens/dictionary.tsv",
    output:
        knowledge="results/knowledge/knowledge.safetensors",
        coverage=report(
            "results/knowledge/coverage.tsv",
            caption="../workflow/report/knowledge_coverage.rst",
            category="2. Knowledge",
            labels={"result": "coverage table"},
        ),
        figure=report(
            "results/knowledge/coverage.png",
            caption="../workflow/report/knowledge_coverage.rst",
            category="2. Knowledge",
            labels={"result": "coverage figure"},
        ),
        quality=report(
            "results/knowledge/quality.tsv",
            caption="../workflow/report/knowledge_quality.rst",
            category="2. Knowledge",
            labels={"result": "quality table"},
        ),
    log:
        "results/logs/knowledge/assemble.log",
    benchmark:
        "results/benchmarks/knowledge/assemble.tsv"
    conda:
        "../envs/knowledge.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        dim=config["knowledge"]["dim"],
    script:
        "../scripts/knowledge.py"
