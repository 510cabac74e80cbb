"""Rule deepce_prepare: signatures of an L1000 plate against its vehicle wells, drugs split whole."""

from genecompass.tasks.deepce.run import prepare
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    prepare(snakemake.params.entry, snakemake.params.task, snakemake.params.seed, snakemake.input.data,
            snakemake.input.smiles, snakemake.params.outdir, snakemake.output.report)
