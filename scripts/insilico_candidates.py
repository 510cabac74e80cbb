"""Rule insilico_candidates: every candidate gene overexpressed alone in source cells, ranked by its shift
towards each target state and away from the source."""

from genecompass.tasks.insilico.run import candidates
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    candidates(snakemake.params.entry, snakemake.params.task, snakemake.params.seed, snakemake.input.model,
               snakemake.input.dictionary, snakemake.input.shards, snakemake.input.qc,
               snakemake.input.get("drivers"), snakemake.input.network, snakemake.output.ranking,
               snakemake.output.summary, snakemake.output.figure)
