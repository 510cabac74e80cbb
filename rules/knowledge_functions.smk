# Functions of rules/knowledge.smk (input functions, params, targets): Snakemake's linter wants
# rules and functions in separate files. Included just before it.


def hgnc_for_species(wildcards):
    """HGNC IDs resolve human symbols listed under several Ensembl IDs."""
    if wildcards.species == "human" and config["references"].get("gene_groups"):
        return [reference_file(config["references"]["gene_groups"])]
    return []


def network_files(wildcards):
    return [reference_file(entry) for entry in network_entries(wildcards.species)]


def network_specs(wildcards):
    """(name, layout) of each network file, in the order of network_files."""
    specs = []
    for entry in network_entries(wildcards.species):
        entry = entry if isinstance(entry, dict) else {}
        specs.append({"name": entry.get("name"), "layout": entry.get("layout")})
    return specs


def promoter_inputs(wildcards):
    entry = plan.promoter_source(config["references"], wildcards.species) or {}
    return {key: reference_file(value) for key, value in entry.items()}


def knowledge_species(kind):
    """Species for which a knowledge type has inputs in this configuration."""
    return plan.knowledge_species(config["references"], kind, SAMPLES_BY_SPECIES)


def knowledge_pair_inputs(wildcards):
    if wildcards.kind == "grn":
        return [f"results/knowledge/inputs/grn_{wildcards.species}.tsv"]
    if wildcards.kind == "family":
        return [f"results/knowledge/inputs/families_{wildcards.species}.tsv"]
    return [f"results/knowledge/inputs/coexpression/{sample}.tsv" for sample in species_samples(wildcards.species)]


def knowledge_embedding_inputs(wildcards):
    """Named inputs {kind}_{species}: vectors, and their quality reports."""
    inputs = {}
    for kind in KNOWLEDGE_KINDS:
        for species in knowledge_species(kind):
            inputs[f"{kind}_{species}"] = f"results/knowledge/{kind}_{species}.safetensors"
            inputs[f"{kind}_{species}_quality"] = f"results/knowledge/{kind}_{species}.quality.json"
    return inputs
