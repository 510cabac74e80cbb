# One table of every task's results, one figure per task, and the QC and pretraining overviews
# (genecompass/summary.py).
# Both are in the HTML report: snakemake --report results/report.html


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
