"""Rule gene_histogram: one sample's mergeable per-token expression histogram."""

import numba

from genecompass.dictionary import gene_to_token, read_dictionary
from genecompass.tokenize import sample_histogram
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    numba.set_num_threads(snakemake.threads)  # the kernels run one block of cells per thread
    mapping = gene_to_token(read_dictionary(snakemake.input.dictionary), snakemake.params.species)
    histogram = sample_histogram(snakemake.input.h5ad, mapping, snakemake.params.chunk_size,
                                 target_sum=snakemake.params.target_sum, progress=True,
                                 scheme=snakemake.params.scheme)
    histogram.save(snakemake.output[0])
