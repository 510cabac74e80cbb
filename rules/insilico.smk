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
    log:
        "results/logs/simulate_insilico_truth.log",
    benchmark:
        "results/benchmarks/simulate_insilico_truth.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        outdir=lambda wildcards, output: Path(output.labels).parent,
        seed=config["seed"],
        world=config["simulate"].get("params", {}),
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
    log:
        "results/logs/tasks/dosage/{method}.log",
    benchmark:
        "results/benchmarks/tasks/dosage/{method}.tsv"
    wildcard_constraints:
        method="|".join(DOSAGE_FINETUNE_METHODS),
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]["model"]
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        task=dosage_task(),
        seed=config["seed"],
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
    log:
        "results/logs/tasks/dosage/knowledge_logistic.log",
    benchmark:
        "results/benchmarks/tasks/dosage/knowledge_logistic.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        task=dosage_task(),
        seed=config["seed"],
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
    log:
        "results/logs/tasks/dosage/evaluate.log",
    benchmark:
        "results/benchmarks/tasks/dosage/evaluate.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        methods=DOSAGE_METHODS,
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
