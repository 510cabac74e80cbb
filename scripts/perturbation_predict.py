"""Rule perturbation_predict: one method's pseudo-bulk predictions for the held-out conditions."""

from genecompass.tasks.perturbation.run import predict
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    predict(snakemake.params.base_method, snakemake.params.task, snakemake.params.species, snakemake.params.seed,
            snakemake.input.prepared, snakemake.input.go, snakemake.output.predictions, snakemake.output.info,
            snakemake.input.get("contextual"), snakemake.input.get("static"))
