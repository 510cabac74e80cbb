"""Rule embed_sample: cell embeddings, within-cell gene cosines and contextual gene sums of one sample."""

from genecompass.embed import embed_sample
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    embed_sample(snakemake.input.model, snakemake.input.shard, snakemake.input.h5ad, snakemake.params.settings,
                 snakemake.params.max_length, snakemake.params.species_samples, snakemake.params.seed,
                 snakemake.output[0])
