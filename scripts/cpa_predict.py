"""Rule cpa_predict: one method's predicted mean and variance per treated condition, and its
dose-response curves."""

from genecompass.tasks.cpa.run import predict
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    predict(snakemake.params.base_method, snakemake.params.task, snakemake.params.species, snakemake.params.seed,
            snakemake.input.prepared, snakemake.output.predictions, snakemake.output.curves, snakemake.output.info,
            snakemake.input.get("smiles"), snakemake.input.get("contextual"), snakemake.input.get("static"))
