# Downstream tasks of the paper, each beside its own tool and baselines.


rule came:
    input:
        unpack(came_inputs),
        dictionary="results/tokens/dictionary.tsv",
    output:
        metrics="results/tasks/came/{pair}/{method}/metrics.json",
        predictions="results/tasks/came/{pair}/{method}/predictions.tsv",
        figure=report(
            "results/tasks/came/{pair}/{method}/confusion.png",
            caption="../workflow/report/confusion.rst",
            category="4. Tasks",
            subcategory="Cross-species annotation (CAME)",
            labels={"dataset": "{pair}", "result": "confusion: {method}"},
        ),
    log:
        "results/logs/tasks/came/{pair}/{method}.log",
    benchmark:
        "results/benchmarks/tasks/came/{pair}/{method}.tsv"
    wildcard_constraints:
        method="came|genecompass_came",
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]["model"]
    resources:
        mem_mb=16000,
        runtime=240,
    params:
        pair=lambda wildcards: came_pair(wildcards.pair),
        task=config["tasks"]["came"],
        reference_species=lambda wildcards: pair_species(wildcards.pair, "reference"),
        query_species=lambda wildcards: pair_species(wildcards.pair, "query"),
    script:
        "../scripts/came.py"


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
