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
    if perturbation_methods.method_uses_genecompass(wildcards.method):
        inputs.update(genecompass_embedding_inputs("perturbation"))
    return inputs


def perturbation_targets():
    return [f"results/tasks/perturbation/{name}/metrics.tsv" for name in perturbation_datasets()]
