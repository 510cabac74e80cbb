"""Rule grn_summary: every method's metrics on one GRN dataset, one table and one figure."""

from genecompass.tasks.grn.run import summarise
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    summarise(snakemake.wildcards.dataset, snakemake.input.metrics, snakemake.params.methods,
              snakemake.output.table, snakemake.output.figure)
