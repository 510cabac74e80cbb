# Functions of rules/deepce.smk (input functions, params, targets): Snakemake's linter wants
# rules and functions in separate files. Included just before it.


def deepce_dataset(name):
    return task_entry("deepce", name)


def deepce_method_inputs(wildcards):
    entry = deepce_dataset(wildcards.dataset)
    inputs = {"prepared": f"results/tasks/deepce/{wildcards.dataset}/prepared/signatures.h5ad"}
    base, model = method_model(deepce_methods, wildcards.method)
    if deepce_methods.method_uses_genecompass(base):
        inputs.update(embedding_inputs(model))
    elif base == "deepce":
        inputs["gene_vectors"] = reference_file(entry["gene_vectors"])
    return inputs


def deepce_targets():
    return [f"results/tasks/deepce/{name}/metrics.tsv" for name in task_entries("deepce")]
