# Gene dosage sensitivity (tasks.dosage): the token classifier fine-tuned over gene folds, from the
# pretrained model and without pretraining, beside logistic regression on the knowledge vectors.


DOSAGE_METHODS = task_methods(dosage_methods, skip_models=(plan.UNTRAINED_MODEL,))


DOSAGE_FINETUNE_METHODS = [
    method for method in DOSAGE_METHODS if method_model(dosage_methods, method)[0] in dosage_methods.FINETUNE_METHODS
]


rule dosage_finetune:
    input:
        shards=dosage_shards,
        model=lambda wildcards: model_dir(dosage_model(wildcards)),
        dictionary=lambda wildcards: model_dictionary(dosage_model(wildcards)),
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
        base_method=lambda wildcards: method_model(dosage_methods, wildcards.method)[0],
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
