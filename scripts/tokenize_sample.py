"""Rules tokenize and released_tokenize: one QC'd sample -> ranked-token Arrow shard (and its report)."""

import logging

import numba

from genecompass.dictionary import gene_to_token, read_dictionary
from genecompass.tokenize import read_medians, tokenize_sample
from genecompass.utils import logged_to, write_json

with logged_to(snakemake.log[0]):
    numba.set_num_threads(snakemake.threads)  # the kernels run one block of cells per thread
    mapping = gene_to_token(read_dictionary(snakemake.input.dictionary), snakemake.params.species)
    stats = tokenize_sample(
        snakemake.input.h5ad, snakemake.output.shard, mapping, read_medians(snakemake.input.medians),
        species=snakemake.params.species, sample=snakemake.wildcards.sample,
        max_length=snakemake.params.max_length, chunk_size=snakemake.params.chunk_size,
        target_sum=snakemake.params.target_sum, scheme=snakemake.params.scheme,
    )
    logging.getLogger("genecompass.tokenize").info(
        "%s: %d of %d genes have no token in %s (%.2f%% of the UMIs); shard stats: %s", snakemake.wildcards.sample,
        stats["n_genes_unmapped"], stats["n_genes"], snakemake.input.dictionary, 100 * stats["umi_share_unmapped"],
        stats)
    if "report" in snakemake.output.keys():
        write_json(stats, snakemake.output.report)
