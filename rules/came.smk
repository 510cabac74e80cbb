# Cross-species cell-type annotation (tasks.came): CAME and GeneCompass+CAME on each reference/query pair.


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
        method="|".join(task_methods(came_methods)),
    conda:
        "../envs/torch.yaml"
    threads: config["threads"]["model"]
    resources:
        mem_mb=16000,
        runtime=240,
    params:
        pair=lambda wildcards: came_pair(wildcards.pair),
        base_method=lambda wildcards: method_model(came_methods, wildcards.method)[0],
        task=config["tasks"]["came"],
        reference_species=lambda wildcards: pair_species(wildcards.pair, "reference"),
        query_species=lambda wildcards: pair_species(wildcards.pair, "query"),
    script:
        "../scripts/came.py"
