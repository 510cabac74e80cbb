"""Rule grn_deletion: each TF deleted in silico; precision of the most shifted genes against its targets."""

from genecompass.tasks.grn.run import delete_tfs
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    delete_tfs(snakemake.wildcards.variant, snakemake.input.dataset, snakemake.input.model,
               snakemake.input.dictionary, snakemake.input.shards, snakemake.params.species, snakemake.params.task,
               snakemake.params.seed, snakemake.output.table)
