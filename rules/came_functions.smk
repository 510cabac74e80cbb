# Functions of rules/came.smk (input functions, params, targets): Snakemake's linter wants
# rules and functions in separate files. Included just before it.


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
