"""Rule cpa_prepare: load a dose-response dataset, drop drugs without SMILES, split it (held-out
doses = OOD), rank DE genes."""

from genecompass.tasks.cpa.run import prepare
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    prepare(snakemake.params.entry, snakemake.params.task, snakemake.params.seed, snakemake.input.data,
            snakemake.input.smiles, snakemake.params.outdir, snakemake.output.report)
