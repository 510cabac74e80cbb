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
    base, model = method_model(came_methods, wildcards.method)
    if came_methods.method_uses_genecompass(base):
        inputs.update(embedding_inputs(model))
    return inputs


def came_targets():
    return [
        f"results/tasks/came/{pair}/{method}/metrics.json"
        for pair in came_pairs()
        for method in task_methods(came_methods)
    ]
