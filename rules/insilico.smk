# In-silico quantitative perturbation (tasks.insilico): TF deletion and gene-embedding shifts, the
# shift of source cells towards a target state when its drivers are overexpressed, and a ranking of
# fate-transition candidates.


INSILICO_OUTPUTS = insilico_methods.OUTPUTS


rule insilico_deletion:
    input:
        unpack(insilico_inputs),
    output:
        shifts="results/tasks/insilico/{dataset}/deletion_shifts.tsv.gz",
        tests=report(
            "results/tasks/insilico/{dataset}/deletion_tests.tsv",
            caption="../workflow/report/insilico_deletion.rst",
            category="4. Tasks",
            subcategory="In silico perturbation",
            labels={"dataset": "{dataset}", "result": "deletion tests"},
        ),
        figure=report(
            "results/tasks/insilico/{dataset}/deletion.png",
            caption="../workflow/report/insilico_deletion.rst",
            category="4. Tasks",
            subcategory="In silico perturbation",
            labels={"dataset": "{dataset}", "result": "deletion shifts"},
        ),
    log:
        "results/logs/tasks/insilico/{dataset}/deletion.log",
    benchmark:
        "results/benchmarks/tasks/insilico/{dataset}/deletion.tsv"
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]["model"]
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        task=insilico_task(),
        entry=lambda wildcards: insilico_dataset(wildcards.dataset),
        seed=config["seed"],
    script:
        "../scripts/insilico_deletion.py"


rule insilico_state_shift:
    input:
        unpack(insilico_inputs),
    output:
        cells="results/tasks/insilico/{dataset}/state_shift.tsv.gz",
        summary="results/tasks/insilico/{dataset}/state_shift.json",
        figure=report(
            "results/tasks/insilico/{dataset}/state_shift.png",
            caption="../workflow/report/insilico_state_shift.rst",
            category="4. Tasks",
            subcategory="In silico perturbation",
            labels={"dataset": "{dataset}", "result": "state shift"},
        ),
        knockout="results/tasks/insilico/{dataset}/knockout_dose.tsv",
    log:
        "results/logs/tasks/insilico/{dataset}/state_shift.log",
    benchmark:
        "results/benchmarks/tasks/insilico/{dataset}/state_shift.tsv"
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]["model"]
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        task=insilico_task(),
        entry=lambda wildcards: insilico_dataset(wildcards.dataset),
        seed=config["seed"],
    script:
        "../scripts/insilico_state_shift.py"


rule insilico_candidates:
    input:
        unpack(insilico_inputs),
    output:
        ranking=report(
            "results/tasks/insilico/{dataset}/candidates.tsv",
            caption="../workflow/report/insilico_candidates.rst",
            category="4. Tasks",
            subcategory="In silico perturbation",
            labels={"dataset": "{dataset}", "result": "candidate ranking"},
        ),
        summary="results/tasks/insilico/{dataset}/candidates.json",
        figure=report(
            "results/tasks/insilico/{dataset}/candidates.png",
            caption="../workflow/report/insilico_candidates.rst",
            category="4. Tasks",
            subcategory="In silico perturbation",
            labels={"dataset": "{dataset}", "result": "candidates"},
        ),
    log:
        "results/logs/tasks/insilico/{dataset}/candidates.log",
    benchmark:
        "results/benchmarks/tasks/insilico/{dataset}/candidates.tsv"
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]["model"]
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        task=insilico_task(),
        entry=lambda wildcards: insilico_dataset(wildcards.dataset),
        seed=config["seed"],
    script:
        "../scripts/insilico_candidates.py"
