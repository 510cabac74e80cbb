# Pre-training (one run per model variant), the untrained reference model,
# embedding extraction and the gene-embedding analysis.


rule pretrain:
    input:
        corpus="results/corpus/dataset",
        knowledge="results/knowledge/knowledge.safetensors",
        dictionary="results/tokens/dictionary.tsv",
    output:
        model=directory("results/model/{variant}/model"),
        summary="results/model/{variant}/summary.json",
        training_log="results/model/{variant}/training_log.csv",
        figure=report(
            "results/model/{variant}/loss.png",
            caption="../workflow/report/pretraining_loss.rst",
            category="3. Pretraining and gene embeddings",
            labels={"variant": "{variant}", "result": "loss curves"},
        ),
    log:
        "results/logs/model/pretrain_{variant}.log",
    benchmark:
        "results/benchmarks/model/pretrain_{variant}.tsv"
    wildcard_constraints:
        variant="|".join(pretrained_variants()),
    conda:
        "../envs/torch.yaml"
    threads: config["pretrain"]["threads"]
    resources:
        mem_mb=16000,
        runtime=24 * 60,
        # One node: `gpu` GPUs (--gpus). Several nodes: `gpus` per node as gres (per node in SLURM).
        nodes=pretrain_nodes(),
        gpu=config["pretrain"]["gpus"] if pretrain_nodes() == 1 else 0,
        gres=f"gpu:{config['pretrain']['gpus']}" if pretrain_nodes() > 1 and config["pretrain"]["gpus"] else "",
    params:
        # Checkpoints live outside the outputs: Snakemake keeps them when a run is
        # interrupted, and the re-run resumes from the last one.
        work="results/model/{variant}/run",
        launcher=pretrain_launcher,
        script=str(Path(workflow.basedir) / "scripts" / "pretrain.py"),
        model_section=lambda wildcards: shell_json(config["model"]),
        pretrain_section=lambda wildcards: shell_json(config["pretrain"]),
        seed=config["seed"],
    shell:
        # PYTHONSAFEPATH: the scripts folder stays off sys.path, so no script can shadow a standard module.
        "export PYTHONSAFEPATH=1; {params.launcher} {params.script:q} --corpus {input.corpus} --knowledge {input.knowledge}"
        " --dictionary {input.dictionary} --variant {wildcards.variant}"
        " --model-section {params.model_section} --pretrain-section {params.pretrain_section}"
        " --seed {params.seed} --threads {threads} --work {params.work}"
        " --out-model {output.model} --out-summary {output.summary} --out-log {output.training_log}"
        " --out-figure {output.figure} > {log} 2>&1"


rule untrained_model:
    input:
        knowledge="results/knowledge/knowledge.safetensors",
        dictionary="results/tokens/dictionary.tsv",
    output:
        model=directory("results/model/untrained/model"),
    log:
        "results/logs/model/untrained.log",
    benchmark:
        "results/benchmarks/model/untrained.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        model_section=config["model"],
        variant=main_variant(),
        seed=config["seed"],
    script:
        "../scripts/untrained_model.py"


rule export_released:
    input:
        model="results/model/{variant}/model",
        dictionary="results/tokens/dictionary.tsv",
        medians="results/tokens/medians.tsv",
    output:
        config=f"{plan.EXPORT_FOLDER}/config.json",
        weights=f"{plan.EXPORT_FOLDER}/model.safetensors",
        dictionaries=[f"{plan.EXPORT_FOLDER}/{name}" for name in plan.RELEASED_DICTIONARY_FILES],
    log:
        "results/logs/model/export_released_{variant}.log",
    benchmark:
        "results/benchmarks/model/export_released_{variant}.tsv"
    wildcard_constraints:
        variant="|".join(pretrained_variants()),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        folder=lambda wildcards: plan.EXPORT_FOLDER.format(variant=wildcards.variant),
    script:
        "../scripts/export_released.py"


rule import_released:
    input:
        unpack(released_inputs),
    output:
        model=directory("results/model/released/model"),
        dictionary="results/model/released/dictionary.tsv",
        medians="results/model/released/medians.tsv",
        report="results/model/released/import.json",
    log:
        "results/logs/model/import_released.log",
    benchmark:
        "results/benchmarks/model/import_released.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=16000,
        runtime=60,
    params:
        checkpoint=released_checkpoint,
        median_species=lambda wildcards: list(released_source()["medians"]),
    script:
        "../scripts/import_released.py"


use rule tokenize as released_tokenize with:
    # The samples in the released dictionary and scheme, for a released source; reports the genes
    # (and UMI share) the release does not know.
    input:
        h5ad="results/qc/{sample}.h5ad",
        dictionary="results/model/released/dictionary.tsv",
        medians="results/model/released/medians.tsv",
    output:
        shard="results/model/released/tokens/{sample}.arrow",
        report="results/model/released/tokens/{sample}.json",
    log:
        "results/logs/model/released_tokens/{sample}.log",
    benchmark:
        "results/benchmarks/model/released_tokens/{sample}.tsv"
    params:
        species=sample_species,
        max_length=config["tokens"]["max_length"],
        target_sum=config["tokens"]["target_sum"],
        chunk_size=config["tokens"]["chunk_size"],
        scheme="released",


rule embed_sample:
    input:
        model="results/model/{variant}/model",
        shard=embedding_shard,
        h5ad="results/qc/{sample}.h5ad",
    output:
        "results/embeddings/{variant}/samples/{sample}.npz",
    log:
        "results/logs/embeddings/{variant}/{sample}.log",
    benchmark:
        "results/benchmarks/embeddings/{variant}/{sample}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]["model"]
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=min(1, config["pretrain"]["gpus"]),
    params:
        settings=config["embeddings"],
        max_length=config["model"]["max_length"],
        species_samples=lambda wildcards: len(species_samples(sample_species(wildcards))),
        seed=config["seed"],
    script:
        "../scripts/embed_sample.py"


rule cell_embeddings:
    input:
        embeddings="results/embeddings/{variant}/samples/{sample}.npz",
        h5ad="results/qc/{sample}.h5ad",
    output:
        "results/embeddings/{variant}/cells/{sample}.h5ad",
    log:
        "results/logs/embeddings/{variant}/cells_{sample}.log",
    benchmark:
        "results/benchmarks/embeddings/{variant}/cells_{sample}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    script:
        "../scripts/cell_embeddings.py"


rule embedding_figure:
    input:
        cells=lambda wildcards: [f"results/embeddings/{wildcards.variant}/cells/{s}.h5ad" for s in samples.index],
    output:
        report(
            "results/embeddings/{variant}/cells.png",
            caption="../workflow/report/cell_embeddings.rst",
            category="3. Pretraining and gene embeddings",
            labels={"variant": "{variant}", "result": "cell embeddings"},
        ),
    log:
        "results/logs/embeddings/{variant}/figure.log",
    benchmark:
        "results/benchmarks/embeddings/{variant}/figure.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=20,
    params:
        color_by=config["embeddings"].get("color_by"),
        seed=config["seed"],
    script:
        "../scripts/embedding_figure.py"


rule gene_embeddings:
    input:
        samples=sample_embedding_files,
        model="results/model/{variant}/model",
        dictionary=embedding_dictionary,
    output:
        contextual="results/embeddings/{variant}/genes_contextual.tsv.gz",
        static="results/embeddings/{variant}/genes_static.tsv.gz",
    log:
        "results/logs/embeddings/{variant}/genes.log",
    benchmark:
        "results/benchmarks/embeddings/{variant}/genes.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    script:
        "../scripts/gene_embeddings.py"


rule embedding_analysis:
    input:
        contextual=list(contextual_gene_tables().values()),
        samples=[path for paths in variant_sample_embeddings().values() for path in paths],
    output:
        summary=report(
            "results/analysis/gene_embeddings/summary.tsv",
            caption="../workflow/report/gene_embeddings.rst",
            category="3. Pretraining and gene embeddings",
            labels={"variant": "all", "result": "gene-embedding analysis table"},
        ),
        pairs="results/analysis/gene_embeddings/pairs.tsv.gz",
        figure=report(
            "results/analysis/gene_embeddings/similarity.png",
            caption="../workflow/report/gene_embeddings.rst",
            category="3. Pretraining and gene embeddings",
            labels={"variant": "all", "result": "gene-embedding similarity"},
        ),
    log:
        "results/logs/analysis/gene_embeddings.log",
    benchmark:
        "results/benchmarks/analysis/gene_embeddings.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        variants=analysis_variants(),
        contextual=contextual_gene_tables(),
        samples=variant_sample_embeddings(),
        n_pairs=config["embeddings"].get("analysis_pairs", 2000),
        seed=config["seed"],
    script:
        "../scripts/embedding_analysis.py"
