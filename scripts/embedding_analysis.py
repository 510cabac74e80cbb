"""Rule embedding_analysis: homologous vs non-homologous gene-embedding cosines, within-cell cosines."""

from genecompass.embedding_analysis import analyse
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    analyse(snakemake.params.variants, snakemake.params.contextual, snakemake.params.samples,
            snakemake.params.n_pairs, snakemake.params.seed, snakemake.output.summary, snakemake.output.pairs,
            snakemake.output.figure)
