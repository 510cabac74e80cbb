"""Rule tokenize: one QC'd sample -> ranked-token Arrow shard."""

import logging

import numba

from genecompass.dictionary import gene_to_token, read_dictionary
from genecompass.tokenize import read_medians, tokenize_sample
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    numba.set_num_threads(snakemake.threads)  # the kernels run one block of cells per thread
    mapping = gene_to_token(read_dictionary(snakemake.input.dictionary), snakemake.params.species)
    stats = tokenize_sample(
        snakemake.input.h5ad, snakemake.output[0], mapping, read_medians(snakemake.input.medians),
        species=snakemake.params.species, sample=snakemake.wildcards.sample,
        max_length=snakemake.params.max_length, chunk_size=snakemake.params.chunk_size,
        target_sum=snakemake.params.target_sum,
    )
    logging.getLogger("genecompass.tokenize").info("shard stats: %s", stats)
