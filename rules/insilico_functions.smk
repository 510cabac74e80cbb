# Functions of rules/insilico.smk (input functions, params, targets): Snakemake's linter wants
# rules and functions in separate files. Included just before it.


def insilico_task():
    return config["tasks"].get("insilico") or {}


def insilico_runs():
    """Run name -> (dataset, model): each dataset on the source model (under its own name) and on each
    control model (``<dataset>_<model>``), the task's model controls."""
    return {
        plan.method_name(name, model, config["model"]): (name, model)
        for name in task_entries("insilico")
        for model in task_models()
    }


def insilico_run(run):
    if run not in insilico_runs():
        raise ValueError(f"tasks.insilico has no run '{run}' (it has {list(insilico_runs())})")
    return insilico_runs()[run]


def insilico_dataset(run):
    """The config entry of a run (a dataset's name, or ``<dataset>_<model>``)."""
    return task_entry("insilico", insilico_run(run)[0])


def insilico_inputs(wildcards):
    entry = insilico_dataset(wildcards.dataset)
    model = insilico_run(wildcards.dataset)[1]
    return {
        "shards": model_shards(model, entry["samples"]),
        "qc": [f"results/qc/{sample}.h5ad" for sample in entry["samples"]],
        "model": model_dir(model),
        "dictionary": model_dictionary(model),
        "network": f"results/knowledge/inputs/grn_{entry['species']}.tsv",
        "housekeeping": reference_file(entry["housekeeping"]),
        # drivers: a state -> genes mapping in the config, or a file (a path or a download locator)
        **({} if insilico_methods.drivers_in_config(entry) else {"drivers": reference_file(entry["drivers"])}),
    }


def insilico_targets():
    return [f"results/tasks/insilico/{run}/{output}" for run in insilico_runs() for output in INSILICO_OUTPUTS]
