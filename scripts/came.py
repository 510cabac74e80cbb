"""Rule came: cross-species annotation of one reference/query pair with CAME or GeneCompass+CAME."""

from genecompass.tasks.came.run import came
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    came(snakemake.params.pair, snakemake.params.task, snakemake.params.base_method, snakemake.input.reference,
         snakemake.input.query, snakemake.input.dictionary, snakemake.params.reference_species,
         snakemake.params.query_species, snakemake.output.metrics, snakemake.output.predictions,
         snakemake.output.figure, snakemake.input.get("contextual"), snakemake.input.get("static"))
