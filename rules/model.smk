# Pre-training (one run per model variant), the untrained reference model,
# embedding extraction and the gene-embedding analysis.


def shell_json(value):
    """A config section as one shell-quoted JSON argument."""
    return shlex.quote(json.dumps(value, sort_keys=True))


def rule_python():
    """The Python of a shell rule: its conda env's under --use-conda, else the one running Snakemake."""
    from snakemake.settings.types import DeploymentMethod

    settings = getattr(workflow, "deployment_settings", None)
    if settings is not None and DeploymentMethod.CONDA in settings.deployment_method:
        return "python"
    return shlex.quote(sys.executable)


def pretrain_nodes():
    return int(config["pretrain"].get("nodes", 1))


def pretrain_launcher(wildcards, resources):
    """How the pretraining script starts.

    One node: one process, or with several GPUs torchrun (torch.distributed.run) with one process
    per GPU of ``resources.gpu``. Several nodes (pretrain.nodes > 1, inside a SLURM job over those
    nodes): srun starts one torchrun per node; they meet at a c10d rendezvous on the job's first node,
    and the node count comes from SLURM_NNODES, the processes per node from pretrain.gpus (1 on CPU).
    """
    nodes = int(resources.nodes)
    if nodes > 1:
        per_node = max(1, int(config["pretrain"]["gpus"]))
        port = int(config["pretrain"].get("rendezvous_port", 29500))
        return (
            ': "${SLURM_JOB_ID:?pretrain.nodes > 1 runs inside a SLURM job: use the slurm profile}" && '
            'srun --ntasks-per-node 1 --ntasks "$SLURM_NNODES" --kill-on-bad-exit=1 '
            f'{rule_python()} -m torch.distributed.run --nnodes "$SLURM_NNODES" --nproc-per-node {per_node} '
            '--rdzv-backend c10d --rdzv-id "$SLURM_JOB_ID" '
            f'--rdzv-endpoint "$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1):{port}"'
        )
    gpus = int(resources.gpu)
    if gpus > 1:
        return f"{rule_python()} -m torch.distributed.run --standalone --nnodes 1 --nproc-per-node {gpus}"
    return rule_python()


def sample_embedding_files(wildcards):
    """Every sample's inference output of one model variant, in sample-sheet order."""
    return [f"results/embeddings/{wildcards.variant}/samples/{sample}.npz" for sample in samples.index]


def contextual_gene_tables():
    """Variant -> its contextual gene-embedding table, for every variant of the embedding analysis."""
    return {variant: f"results/embeddings/{variant}/genes_contextual.tsv.gz" for variant in analysis_variants()}


def variant_sample_embeddings():
    """Variant -> every sample's inference output, for every variant of the embedding analysis."""
    return {
        variant: [f"results/embeddings/{variant}/samples/{sample}.npz" for sample in samples.index]
        for variant in analysis_variants()
    }


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


rule embed_sample:
    input:
        model="results/model/{variant}/model",
        shard="results/tokens/shards/{sample}.arrow",
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


rule gene_embeddings:
    input:
        samples=sample_embedding_files,
        model="results/model/{variant}/model",
        dictionary="results/tokens/dictionary.tsv",
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
