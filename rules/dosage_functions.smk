# Functions of rules/dosage.smk (input functions, params, targets): Snakemake's linter wants
# rules and functions in separate files. Included just before it.


def dosage_task():
    return config["tasks"].get("dosage") or {}


def dosage_shards():
    chosen = dosage_task().get("samples") or list(samples.index)
    return [f"results/tokens/shards/{sample}.arrow" for sample in chosen]


def dosage_targets():
    return ["results/tasks/dosage/metrics.tsv"] if dosage_task().get("labels") else []
