# Functions of rules/cpa.smk (input functions, params, targets): Snakemake's linter wants
# rules and functions in separate files. Included just before it.


def cpa_dataset(name):
    return task_entry("cpa", name)


def cpa_method_inputs(wildcards):
    entry = cpa_dataset(wildcards.dataset)
    inputs = {"prepared": f"results/tasks/cpa/{wildcards.dataset}/prepared/samples.h5ad"}
    if entry.get("smiles"):
        inputs["smiles"] = reference_file(entry["smiles"])
    base, model = method_model(cpa_methods, wildcards.method)
    if cpa_methods.method_uses_genecompass(base):
        inputs.update(embedding_inputs(model))
    return inputs


def cpa_evaluate_inputs(wildcards):
    entry = cpa_dataset(wildcards.dataset)
    base = f"results/tasks/cpa/{wildcards.dataset}"
    inputs = {
        "prepared": f"{base}/prepared/samples.h5ad",
        "predictions": [f"{base}/{method}/predictions.h5ad" for method in CPA_METHODS],
        "curves": [f"{base}/{method}/dose_response.tsv" for method in CPA_METHODS],
    }
    if entry.get("truth"):
        inputs["truth"] = reference_file(entry["truth"])
    return inputs


def cpa_targets():
    return [f"results/tasks/cpa/{name}/metrics.tsv" for name in task_entries("cpa")]
