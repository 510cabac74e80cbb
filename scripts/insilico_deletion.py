"""Rule insilico_deletion: delete each TF; gene-embedding shifts of its targets vs housekeeping vs other genes."""

from genecompass.tasks.insilico.run import deletion
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    deletion(snakemake.params.entry, snakemake.params.task, snakemake.params.seed, snakemake.input.model,
             snakemake.input.dictionary, snakemake.input.shards, snakemake.input.network, snakemake.input.housekeeping,
             snakemake.output.shifts, snakemake.output.tests, snakemake.output.figure)
