"""Rule perturbation_prepare: checked cells, selected genes, GEARS's simulation split, DE genes."""

from genecompass.tasks.perturbation.run import prepare
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    prepare(snakemake.params.task, snakemake.params.seed, snakemake.input.data, snakemake.input.go,
            snakemake.params.outdir, snakemake.output.report)
