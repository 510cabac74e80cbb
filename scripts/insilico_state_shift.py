"""Rule insilico_state_shift: a target state's drivers overexpressed in source cells vs random gene sets,
and the source's own drivers knocked down by each factor."""

from genecompass.tasks.insilico.run import state_shift
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    state_shift(snakemake.params.entry, snakemake.params.task, snakemake.params.seed, snakemake.input.model,
                snakemake.input.dictionary, snakemake.input.shards, snakemake.input.qc,
                snakemake.input.get("drivers"), snakemake.output.cells, snakemake.output.knockout,
                snakemake.output.summary, snakemake.output.figure)
