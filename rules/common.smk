# Input functions and target lists; no rules here.

from pathlib import Path

SIMULATE_DIR = config["simulate"]["outdir"]


def sample_row(wildcards):
    return samples.loc[wildcards.sample]


def sample_species(wildcards):
    return sample_row(wildcards)["species"]


def sample_counts(wildcards):
    return sample_row(wildcards)["path"]


def sample_gene_table(wildcards):
    return f"results/references/{sample_species(wildcards)}_genes.tsv"


def species_gene_table_source(wildcards):
    return config["references"][f"{wildcards.species}_genes"]


def qc_outputs(kind):
    suffix = {"h5ad": ".h5ad", "filters": ".filters.tsv"}[kind]
    return [f"results/qc/{sample}{suffix}" for sample in samples.index]


def token_outputs(kind):
    suffix = {"histogram": ("histograms", ".npz"), "shard": ("shards", ".arrow")}[kind]
    return [f"results/tokens/{suffix[0]}/{sample}{suffix[1]}" for sample in samples.index]


def all_targets():
    return [
        "results/qc/summary.tsv",
        "results/tokens/dictionary_summary.json",
        "results/tokens/medians.tsv",
        "results/corpus/summary.json",
    ]
