# Functions of rules/summary.smk (input functions, params, targets): Snakemake's linter wants
# rules and functions in separate files. Included just before it.


def summary_entries():
    """Every downstream result the summary reads, as {task, dataset, path}, by task: the tasks' own target
    lists, so both name the same files (genecompass.plan.summary_entries)."""
    targets = {
        "annotation": annotation_targets(),
        "came": came_targets(),
        "grn": grn_targets(),
        "perturbation": perturbation_targets(),
        "cpa": cpa_targets(),
        "deepce": deepce_targets(),
        "dosage": dosage_targets(),
        "insilico": insilico_targets(),
    }
    labels = dosage_task().get("labels")
    entries = plan.summary_entries(targets, reference_file(labels) if labels else None, TASKS)
    for entry in entries.get("insilico", []):  # a run on a control model: <dataset>_<model>
        name, model = insilico_run(entry["dataset"])
        entry.update(dataset=name, model="" if model == source_model() else model)
    return entries


def summary_task_entries(task):
    entries = summary_entries()
    if task not in entries:
        raise ValueError(f"no results of task '{task}' in this config (tasks with results: {sorted(entries)})")
    return entries[task]


def summary_task_inputs(wildcards):
    if wildcards.task == "insilico":
        return [
            f"{entry['path']}/{output}" for entry in summary_task_entries("insilico") for output in INSILICO_OUTPUTS
        ]
    return [entry["path"] for entry in summary_task_entries(wildcards.task)]


def summary_targets():
    return [
        "results/summary/summary.tsv",
        *[f"results/summary/{task}.png" for task in summary_entries()],
        "results/summary/qc.png",
        "results/summary/pretraining.png",
    ]


def summary_controls():
    """Name parts of the control methods: the control models but our main pretrained variant (which stands
    beside a released source as GeneCompass, not as a control)."""
    return [model for model in plan.control_models(config["model"]) if model != main_variant()]
