# Single-species cell-type annotation (tasks.annotation): fine-tuned GeneCompass, the same model
# without pretraining, and logistic regression, on whole held-out samples or donors.


ANNOTATION_METHODS = annotation_method_names()


rule annotate:
    input:
        unpack(annotation_inputs),
    output:
        metrics="results/tasks/annotation/{dataset}/{method}/metrics.json",
        predictions="results/tasks/annotation/{dataset}/{method}/predictions.tsv",
        figure=report(
            "results/tasks/annotation/{dataset}/{method}/confusion.png",
            caption="../workflow/report/confusion.rst",
            category="4. Tasks",
            subcategory="Cell-type annotation",
            labels={"dataset": "{dataset}", "result": "confusion: {method}"},
        ),
    log:
        "results/logs/tasks/annotation/{dataset}/{method}.log",
    benchmark:
        "results/benchmarks/tasks/annotation/{dataset}/{method}.tsv"
    wildcard_constraints:
        method="|".join(ANNOTATION_METHODS),
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]["model"]
    resources:
        mem_mb=16000,
        runtime=600,
        gpu=min(1, config["pretrain"]["gpus"]),
    params:
        dataset=lambda wildcards: annotation_dataset(wildcards.dataset),
        base_method=lambda wildcards: method_model(annotation_methods, wildcards.method)[0],
        task=config["tasks"]["annotation"],
        seeds=annotation_seeds,
    script:
        "../scripts/annotate.py"
