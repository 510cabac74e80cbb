"""Rule grn_prior_sweep: DeepSEM + binarised embedding-cosine prior at every threshold of a grid."""

import numpy as np

from genecompass.embedding_files import read_symbol_vectors
from genecompass.grn.beeline import read_ranked_edges
from genecompass.grn.task import plot_prior_sweep, prior_sweep, read_grn_dataset
from genecompass.utils import atomic_output, logged_to

with logged_to(snakemake.log[0]):
    task = snakemake.params.task
    dataset = snakemake.wildcards.dataset
    expression, tfs, networks = read_grn_dataset(snakemake.input.dataset)
    vectors = read_symbol_vectors(snakemake.input.contextual, snakemake.input.static, snakemake.params.species)
    step = float(task.get("sweep_step", 0.05))
    thresholds = np.round(np.arange(0.0, 1.0 + step / 2, step), 6)
    sweep = prior_sweep(read_ranked_edges(snakemake.input.deepsem), vectors, networks, expression.index, tfs,
                        thresholds)
    sweep.insert(0, "variant", snakemake.wildcards.variant)
    print(sweep.to_string(index=False))
    with atomic_output(snakemake.output.table) as tmp:
        sweep.to_csv(tmp, sep="\t", index=False)
    plot_prior_sweep(sweep, snakemake.output.figure, chosen=float(task.get("prior_threshold", 0.4)),
                     title=f"{dataset}: DeepSEM + {snakemake.wildcards.variant} embedding prior")
