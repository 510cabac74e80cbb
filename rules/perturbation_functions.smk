# Functions of rules/perturbation.smk (input functions, params, targets): Snakemake's linter wants
# rules and functions in separate files. Included just before it.


def perturbation_datasets():
    return task_entries("perturbation")


def perturbation_dataset(name):
    return task_entry("perturbation", name)


def perturbation_method_inputs(wildcards):
    entry = perturbation_dataset(wildcards.dataset)
    inputs = {
        "prepared": f"results/tasks/perturbation/{wildcards.dataset}/prepared/cells.h5ad",
        "go": reference_file(entry["go_gene_sets"]),
    }
    base, model = method_model(perturbation_methods, wildcards.method)
    if perturbation_methods.method_uses_genecompass(base):
        inputs.update(embedding_inputs(model))
    return inputs


def perturbation_targets():
    return [f"results/tasks/perturbation/{name}/metrics.tsv" for name in perturbation_datasets()]
