"""Rule insilico_deletion: delete each TF; gene-embedding shifts of its targets vs housekeeping vs other genes."""

import pandas as pd

from genecompass.annotation.finetune import load_tokenized
from genecompass.dictionary import read_dictionary
from genecompass.embed import load_encoder
from genecompass.insilico.analysis import plot_deletion_shifts
from genecompass.insilico.gene_sets import (
    gene_token_lookup,
    read_gene_list,
    token_names,
    tokens_of,
)
from genecompass.insilico.task import deletion_experiment, targets_by_tf
from genecompass.utils import atomic_output, logged_to

with logged_to(snakemake.log[0]):
    task, entry = snakemake.params.task, snakemake.params.entry
    settings = task.get("deletion", {})
    dictionary = read_dictionary(snakemake.input.dictionary)
    lookup = gene_token_lookup(dictionary, entry["species"])
    housekeeping = list(tokens_of(read_gene_list(snakemake.input.housekeeping), lookup).values())
    network = pd.read_csv(snakemake.input.network, sep="\t", dtype=str)
    encoder = load_encoder(snakemake.input.model, task.get("device", "cpu"))
    shifts, tests = deletion_experiment(
        encoder, load_tokenized(list(snakemake.input.shards)), targets_by_tf(network, lookup), housekeeping,
        token_names(dictionary, entry["species"]), min_targets=settings.get("min_targets", 5),
        max_tfs=settings.get("max_tfs", 10), max_cells=settings.get("max_cells", 100), seed=snakemake.params.seed)
    print(tests.round(4).to_string())
    with atomic_output(snakemake.output.shifts) as tmp:
        shifts.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    with atomic_output(snakemake.output.tests) as tmp:
        tests.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    plot_deletion_shifts(shifts, snakemake.output.figure, title=f"{snakemake.wildcards.dataset}: TF deletion")
