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


def annotation_method_names():
    """Every method, and the fine-tuning on each control model (no_pretraining is the untrained control)."""
    return task_methods(annotation_methods, skip_models=(plan.UNTRAINED_MODEL,))


def annotation_model(wildcards):
    """The model a method fine-tunes (or, without pretraining, takes the architecture and tokens of)."""
    return method_model(annotation_methods, wildcards.method)[1]


def annotation_inputs(wildcards):
    dataset = annotation_dataset(wildcards.dataset)
    model = annotation_model(wildcards)
    uses_model = annotation_methods.method_uses_model(method_model(annotation_methods, wildcards.method)[0])
    inputs = {
        # the model's own tokens; the baseline reads ours (the cells' order and split), no model's
        "shards": model_shards(model if uses_model else main_variant(), dataset["samples"]),
        "h5ad": [f"results/qc/{s}.h5ad" for s in dataset["samples"]],
    }
    if uses_model:
        inputs["model"] = model_dir(model)
    return inputs


def annotation_targets():
    return [
        f"results/tasks/annotation/{name}/{method}/metrics.json"
        for name in annotation_datasets()
        for method in annotation_method_names()
    ]
