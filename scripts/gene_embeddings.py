"""Rule gene_embeddings: contextual (per species) and static gene-embedding tables of one model."""

from genecompass.embed import gene_tables
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    gene_tables(snakemake.input.model, snakemake.input.dictionary, snakemake.input.samples,
                snakemake.output.contextual, snakemake.output.static)
