# Functions of rules/model.smk (input functions, params, targets): Snakemake's linter wants
# rules and functions in separate files. Included just before it.


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


def embedding_shard(wildcards):
    """The sample's tokens in the dictionary and scheme of the model being embedded."""
    return model_shards(wildcards.variant, [wildcards.sample])[0]


def embedding_dictionary(wildcards):
    return model_dictionary(wildcards.variant)


def released_entry(key):
    """A local file of the released source (model.source): a path, or where its download goes."""
    return reference_file(released_source()[key])


ARCHIVE_SUFFIXES = (".gz", ".tgz", ".tar", ".zip")


def released_checkpoint(wildcards=None):
    """The released source's folder, or its archive (a download, or a local file)."""
    return reference_file(released_source()["checkpoint"])


def released_inputs(wildcards):
    """The released checkpoint and dictionaries, and our gene tables (their symbols)."""
    source = released_source()
    folder = released_checkpoint()
    exported = plan.exported_variant(config["model"])
    if exported:  # the demo's own export: its files
        weights = [f"{folder}/config.json", f"{folder}/model.safetensors"]
    elif Path(folder).suffix in ARCHIVE_SUFFIXES:
        weights = [folder]
    else:
        weights = [f"{folder}/config.json"]
    return {
        "checkpoint": weights,
        "token_dictionary": released_entry("token_dictionary"),
        "medians": [reference_file(entry) for entry in source["medians"].values()],
        "genes": [f"results/references/{species}_genes.tsv" for species in ("human", "mouse")],
    }


def released_targets():
    """The exports of every variant (model.layout released) and the import of a released source."""
    targets = []
    if config["model"].get("layout") == "released":
        targets += [f"{plan.EXPORT_FOLDER.format(variant=variant)}/config.json" for variant in pretrained_variants()]
    if released_source():
        targets += ["results/model/released/model", "results/model/released/import.json"]
    return targets
