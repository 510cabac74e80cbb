# Functions of rules/annotation.smk (input functions, params, targets): Snakemake's linter wants
# rules and functions in separate files. Included just before it.


def annotation_datasets():
    return task_entries("annotation", "datasets", ("samples",))


def annotation_dataset(name):
    return task_entry("annotation", name, sample_keys=("samples",))


def annotation_seeds(wildcards):
    """A dataset's own seeds, else tasks.annotation.seeds, else the workflow seed."""
    task = config["tasks"]["annotation"]
    seeds = annotation_dataset(wildcards.dataset).get("seeds") or task.get("seeds") or [config["seed"]]
    return [int(seed) for seed in seeds]


def annotation_inputs(wildcards):
    dataset = annotation_dataset(wildcards.dataset)
    inputs = {
        "shards": [f"results/tokens/shards/{s}.arrow" for s in dataset["samples"]],
        "h5ad": [f"results/qc/{s}.h5ad" for s in dataset["samples"]],
    }
    if annotation_methods.method_uses_model(wildcards.method):
        inputs["model"] = f"results/model/{main_variant()}/model"
    return inputs


def annotation_targets():
    return [
        f"results/tasks/annotation/{name}/{method}/metrics.json"
        for name in annotation_datasets()
        for method in ANNOTATION_METHODS
    ]
