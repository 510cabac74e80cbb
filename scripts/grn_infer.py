"""Rule grn_infer: one method's ranked TF->gene edges on one GRN dataset, scored against every network."""

from genecompass.tasks.grn.run import infer
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    infer(snakemake.wildcards.method, snakemake.input.dataset, snakemake.params.task, snakemake.params.species,
          snakemake.params.seed, snakemake.threads, snakemake.output.edges, snakemake.output.metrics,
          snakemake.input.get("contextual"), snakemake.input.get("static"), snakemake.input.get("deepsem"))
