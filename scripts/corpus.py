"""Rule corpus: join the shards, split train/validation reproducibly."""

from genecompass.tokenize import build_corpus
from genecompass.utils import logged_to, write_json

with logged_to(snakemake.log[0]):
    stats = build_corpus(snakemake.input, snakemake.output.corpus,
                         validation_fraction=snakemake.params.validation_fraction,
                         seed=snakemake.params.seed)
    write_json(stats, snakemake.output.summary)
