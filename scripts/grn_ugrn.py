"""Rule grn_ugrn: universal GRN features of one frozen model, translators trained on one dataset and
scored on the others."""

from genecompass.tasks.grn.run import universal_grn
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    universal_grn(snakemake.wildcards.variant, snakemake.input.model, snakemake.input.dictionary,
                  snakemake.input.datasets, snakemake.params.species, snakemake.params.task, snakemake.params.seed,
                  snakemake.output.table)
