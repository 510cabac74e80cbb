# Cross-species cell-type annotation (tasks.came): CAME and GeneCompass+CAME on each reference/query pair.


def came_pairs():
    return task_entries("came", "pairs", ("reference", "query"))


def came_pair(name):
    return task_entry("came", name, "pairs", ("reference", "query"))


def pair_species(name, side):
    """The one species of a pair's reference or query samples."""
    found = {SAMPLE_ROWS[sample]["species"] for sample in came_pair(name)[side]}
    if len(found) != 1:
        raise ValueError(
            f"tasks.came.pairs.{name}.{side}: samples of species {sorted(found)}; "
            "use samples of one species per side"
        )
    return found.pop()


def came_inputs(wildcards):
    pair = came_pair(wildcards.pair)
    inputs = {
        "reference": [f"results/qc/{s}.h5ad" for s in pair["reference"]],
        "query": [f"results/qc/{s}.h5ad" for s in pair["query"]],
    }
    if came_methods.method_uses_genecompass(wildcards.method):
        variant = config["tasks"]["came"].get("embedding_variant") or main_variant()
        inputs["contextual"] = f"results/embeddings/{variant}/genes_contextual.tsv.gz"
        inputs["static"] = f"results/embeddings/{variant}/genes_static.tsv.gz"
    return inputs


def came_targets():
    return [
        f"results/tasks/came/{pair}/{method}/metrics.json" for pair in came_pairs() for method in came_methods.METHODS
    ]


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
