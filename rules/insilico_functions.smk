# Functions of rules/insilico.smk (input functions, params, targets): Snakemake's linter wants
# rules and functions in separate files. Included just before it.


def insilico_task():
    return config["tasks"].get("insilico") or {}


def insilico_dataset(name):
    return task_entry("insilico", name)


def insilico_variant():
    return insilico_task().get("variant") or main_variant()


def insilico_inputs(wildcards):
    entry = insilico_dataset(wildcards.dataset)
    return {
        "shards": [f"results/tokens/shards/{sample}.arrow" for sample in entry["samples"]],
        "qc": [f"results/qc/{sample}.h5ad" for sample in entry["samples"]],
        "model": f"results/model/{insilico_variant()}/model",
        "dictionary": "results/tokens/dictionary.tsv",
        "network": f"results/knowledge/inputs/grn_{entry['species']}.tsv",
        "housekeeping": reference_file(entry["housekeeping"]),
        # drivers: a state -> genes mapping in the config, or a file (a path or a download locator)
        **({} if insilico_methods.drivers_in_config(entry) else {"drivers": reference_file(entry["drivers"])}),
    }


def insilico_targets():
    return [
        f"results/tasks/insilico/{name}/{output}" for name in task_entries("insilico") for output in INSILICO_OUTPUTS
    ]
