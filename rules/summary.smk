# One table of every task's results, one figure per task, and the QC and pretraining overviews
# (genecompass/summary.py).
# Both are in the HTML report: snakemake --report results/report.html


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
    return plan.summary_entries(targets, reference_file(labels) if labels else None, TASKS)


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
    """Name parts of the ablated methods: the model variants besides the main one."""
    return pretrained_variants()[1:]


rule summarise_task:
    input:
        summary_task_inputs,
    output:
        table="results/summary/{task}.tsv",
        figure=report(
            "results/summary/{task}.png",
            caption="../workflow/report/summary_task.rst",
            category="0. Summary",
            labels={"task": "{task}", "kind": "figure"},
        ),
    log:
        "results/logs/summary/{task}.log",
    benchmark:
        "results/benchmarks/summary/{task}.tsv"
    wildcard_constraints:
        task="|".join(TASKS),
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        entries=lambda wildcards: summary_task_entries(wildcards.task),
        controls=summary_controls(),
    script:
        "../scripts/summarise_task.py"


rule summary_table:
    input:
        expand("results/summary/{task}.tsv", task=list(summary_entries())),
    output:
        report(
            "results/summary/summary.tsv",
            caption="../workflow/report/summary_table.rst",
            category="0. Summary",
            labels={"task": "all tasks", "kind": "table"},
        ),
    log:
        "results/logs/summary/summary.log",
    benchmark:
        "results/benchmarks/summary/summary.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/summary_table.py"


rule summary_overview:
    input:
        qc="results/qc/summary.tsv",
        logs=expand("results/model/{variant}/training_log.csv", variant=pretrained_variants()),
    output:
        qc=report(
            "results/summary/qc.png",
            caption="../workflow/report/summary_qc.rst",
            category="0. Summary",
            labels={"task": "QC", "kind": "figure"},
        ),
        pretraining=report(
            "results/summary/pretraining.png",
            caption="../workflow/report/summary_pretraining.rst",
            category="0. Summary",
            labels={"task": "pretraining", "kind": "figure"},
        ),
    log:
        "results/logs/summary/overview.log",
    benchmark:
        "results/benchmarks/summary/overview.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        variants=pretrained_variants(),
    script:
        "../scripts/summary_overview.py"
