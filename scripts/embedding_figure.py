"""Rule embedding_figure: one model's cell embeddings of every sample on two principal components."""

import logging

from genecompass.embedding_analysis import plot_cell_embeddings
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    drawn = plot_cell_embeddings(snakemake.input.cells, snakemake.output[0], snakemake.params.color_by,
                                 seed=snakemake.params.seed)
    logging.getLogger("genecompass.embedding_analysis").info("drew %s", drawn)
