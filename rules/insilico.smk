# In-silico quantitative perturbation (tasks.insilico): TF deletion and gene-embedding shifts, the
# shift of source cells towards a target state when its drivers are overexpressed, and a ranking of
# fate-transition candidates.


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


INSILICO_OUTPUTS = insilico_methods.OUTPUTS


def insilico_targets():
    return [
        f"results/tasks/insilico/{name}/{output}" for name in task_entries("insilico") for output in INSILICO_OUTPUTS
    ]


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
