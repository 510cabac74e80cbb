# Functions of rules/dosage.smk (input functions, params, targets): Snakemake's linter wants
# rules and functions in separate files. Included just before it.


def dosage_task():
    return config["tasks"].get("dosage") or {}


def dosage_model(wildcards):
    """The model a fine-tuning method starts from (or, without pretraining, takes the architecture of)."""
    return method_model(dosage_methods, wildcards.method)[1]


def dosage_shards(wildcards):
    chosen = dosage_task().get("samples") or list(samples.index)
    return model_shards(dosage_model(wildcards), chosen)


def dosage_targets():
    return ["results/tasks/dosage/metrics.tsv"] if dosage_task().get("labels") else []
