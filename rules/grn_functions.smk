# Functions of rules/grn.smk (input functions, params, targets): Snakemake's linter wants
# rules and functions in separate files. Included just before it.


def grn_datasets():
    return task_entries("grn", "datasets", ("samples",))


def grn_dataset(name):
    entry = task_entry("grn", name, sample_keys=("samples",))
    if bool(entry.get("samples")) == bool(entry.get("expression")):
        raise ValueError(
            f"tasks.grn.datasets '{name}': give either samples (QC'd samples of the sheet) or "
            "expression (a BEELINE ExpressionData.csv), not both or neither"
        )
    return entry


def grn_dataset_pattern():
    """Wildcard constraint of GRN dataset names (never matches when there are none)."""
    return "|".join(re.escape(name) for name in grn_datasets()) or "(?!x)x"


def grn_variants():
    """Embeddings whose GRN methods run: a released source, every pretrained variant and the untrained model."""
    return [*([plan.RELEASED_MODEL] if released_source() else []), *analysis_variants()]


def grn_method_names():
    return grn_methods.methods(grn_variants())


def grn_dataset_inputs(wildcards):
    entry = grn_dataset(wildcards.dataset)
    inputs = {"networks": list(entry["networks"].values())}
    if entry.get("tfs"):
        inputs["tfs"] = entry["tfs"]
    if entry.get("samples"):
        inputs["h5ad"] = [f"results/qc/{s}.h5ad" for s in entry["samples"]]
    else:
        inputs["expression"] = entry["expression"]
    return inputs


def grn_infer_inputs(wildcards):
    inputs = {"dataset": f"results/tasks/grn/{wildcards.dataset}/input"}
    variant = grn_methods.method_variant(wildcards.method)
    if variant:
        inputs["contextual"] = f"results/embeddings/{variant}/genes_contextual.tsv.gz"
        inputs["static"] = f"results/embeddings/{variant}/genes_static.tsv.gz"
    if wildcards.method.startswith("deepsem_prior_"):
        inputs["deepsem"] = f"results/tasks/grn/{wildcards.dataset}/deepsem/rankedEdges.csv"
    return inputs


def grn_targets():
    return [
        path
        for name in grn_datasets()
        for path in (
            f"results/tasks/grn/{name}/metrics.tsv",
            *[f"results/tasks/grn/{name}/prior_sweep/{variant}.tsv" for variant in grn_variants()],
            *[
                f"results/tasks/grn/{name}/deletion/{variant}.tsv"
                for variant in grn_variants()
                if grn_dataset(name).get("samples")
            ],
        )
    ] + ([f"results/tasks/grn/ugrn/{variant}.tsv" for variant in grn_variants()] if len(grn_datasets()) > 1 else [])
