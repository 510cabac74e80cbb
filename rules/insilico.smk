# Gene dosage sensitivity (tasks.dosage) and in-silico quantitative perturbation
# (tasks.insilico): TF deletion and gene-embedding shifts, the shift of source cells
# towards a target state when its drivers are overexpressed, and a ranking of
# fate-transition candidates. The demo's planted truth comes from simulate_insilico_truth.


rule simulate_insilico_truth:
    output:
        labels=f"{SIMULATE_DIR}/insilico/dosage_sensitive_tfs.csv",
        reach=f"{SIMULATE_DIR}/insilico/dosage_reach.tsv",
        housekeeping=f"{SIMULATE_DIR}/insilico/housekeeping.tsv",
        drivers=f"{SIMULATE_DIR}/insilico/fate_drivers.tsv",
    params:
        outdir=lambda wildcards, output: Path(output.labels).parent,
        seed=config["seed"],
        world=config["simulate"].get("params", {}),
    log:
        "results/logs/simulate_insilico_truth.log",
    benchmark:
        "results/benchmarks/simulate_insilico_truth.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/core.yaml"
    script:
        "../scripts/simulate_insilico_truth.py"


rule dosage_finetune:
    input:
        shards=dosage_shards(),
        model=f"results/model/{main_variant()}/model",
        dictionary="results/tokens/dictionary.tsv",
        labels=reference_file(dosage_task().get("labels") or "unused"),
    output:
        folds="results/tasks/dosage/{method}/folds.tsv",
        predictions="results/tasks/dosage/{method}/predictions.tsv.gz",
    wildcard_constraints:
        method="|".join(DOSAGE_FINETUNE_METHODS),
    params:
        task=dosage_task(),
        seed=config["seed"],
    log:
        "results/logs/tasks/dosage/{method}.log",
    benchmark:
        "results/benchmarks/tasks/dosage/{method}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/dosage_finetune.py"


rule dosage_logistic:
    input:
        knowledge="results/knowledge/knowledge.safetensors",
        dictionary="results/tokens/dictionary.tsv",
        labels=reference_file(dosage_task().get("labels") or "unused"),
    output:
        folds="results/tasks/dosage/knowledge_logistic/folds.tsv",
        predictions="results/tasks/dosage/knowledge_logistic/predictions.tsv.gz",
    params:
        task=dosage_task(),
        seed=config["seed"],
    log:
        "results/logs/tasks/dosage/knowledge_logistic.log",
    benchmark:
        "results/benchmarks/tasks/dosage/knowledge_logistic.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/dosage_logistic.py"


rule dosage_evaluate:
    input:
        folds=expand("results/tasks/dosage/{method}/folds.tsv", method=DOSAGE_METHODS),
        predictions=expand("results/tasks/dosage/{method}/predictions.tsv.gz", method=DOSAGE_METHODS),
    output:
        metrics=report(
            "results/tasks/dosage/metrics.tsv",
            caption="../workflow/report/dosage_metrics.rst",
            category="4. Tasks",
            subcategory="Gene dosage sensitivity",
            labels={"result": "metrics table"},
        ),
        roc=report(
            "results/tasks/dosage/roc.png",
            caption="../workflow/report/dosage_roc.rst",
            category="4. Tasks",
            subcategory="Gene dosage sensitivity",
            labels={"result": "ROC curves"},
        ),
    params:
        methods=DOSAGE_METHODS,
    log:
        "results/logs/tasks/dosage/evaluate.log",
    benchmark:
        "results/benchmarks/tasks/dosage/evaluate.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/dosage_evaluate.py"


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
    params:
        task=insilico_task(),
        entry=lambda wildcards: insilico_dataset(wildcards.dataset),
        seed=config["seed"],
    log:
        "results/logs/tasks/insilico/{dataset}/deletion.log",
    benchmark:
        "results/benchmarks/tasks/insilico/{dataset}/deletion.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        "../envs/torch.yaml"
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
    params:
        task=insilico_task(),
        entry=lambda wildcards: insilico_dataset(wildcards.dataset),
        seed=config["seed"],
    log:
        "results/logs/tasks/insilico/{dataset}/state_shift.log",
    benchmark:
        "results/benchmarks/tasks/insilico/{dataset}/state_shift.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        "../envs/torch.yaml"
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
    params:
        task=insilico_task(),
        entry=lambda wildcards: insilico_dataset(wildcards.dataset),
        seed=config["seed"],
    log:
        "results/logs/tasks/insilico/{dataset}/candidates.log",
    benchmark:
        "results/benchmarks/tasks/insilico/{dataset}/candidates.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/insilico_candidates.py"
