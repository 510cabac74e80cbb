# Single-species cell-type annotation (tasks.annotation): fine-tuned GeneCompass, the same model
# without pretraining, and logistic regression, on whole held-out samples or donors.


ANNOTATION_METHODS = annotation_methods.METHODS


def annotation_datasets():
    return task_entries("annotation", "datasets", ("samples",))


def annotation_dataset(name):
    return task_entry("annotation", name, sample_keys=("samples",))


def annotation_seeds(wildcards):
    """A dataset's own seeds, else tasks.annotation.seeds, else the workflow seed."""
    task = config["tasks"]["annotation"]
    seeds = annotation_dataset(wildcards.dataset).get("seeds") or task.get("seeds") or [config["seed"]]
    return [int(seed) for seed in seeds]


def annotation_inputs(wildcards):
    dataset = annotation_dataset(wildcards.dataset)
    inputs = {
        "shards": [f"results/tokens/shards/{s}.arrow" for s in dataset["samples"]],
        "h5ad": [f"results/qc/{s}.h5ad" for s in dataset["samples"]],
    }
    if annotation_methods.method_uses_model(wildcards.method):
        inputs["model"] = f"results/model/{main_variant()}/model"
    return inputs


def annotation_targets():
    return [
        f"results/tasks/annotation/{name}/{method}/metrics.json"
        for name in annotation_datasets()
        for method in ANNOTATION_METHODS
    ]


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
        task=config["tasks"]["annotation"],
        seeds=annotation_seeds,
    script:
        "../scripts/annotate.py"
