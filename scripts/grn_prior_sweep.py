"""Rule grn_prior_sweep: DeepSEM filtered by one variant's embedding prior at every cosine threshold."""

from genecompass.tasks.grn.run import sweep_prior
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    sweep_prior(snakemake.wildcards.dataset, snakemake.wildcards.variant, snakemake.input.dataset,
                snakemake.params.task, snakemake.params.species, snakemake.input.contextual, snakemake.input.static,
                snakemake.input.deepsem, snakemake.output.table, snakemake.output.figure)
