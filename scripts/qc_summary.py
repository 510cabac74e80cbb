"""Rule qc_summary: one table of every sample's per-filter counts."""

from genecompass.qc import summarize_filters
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    summarize_filters(snakemake.input, snakemake.output[0])
