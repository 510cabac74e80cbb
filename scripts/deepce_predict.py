"""Rule deepce_predict: one method's predicted changes of the held-out drugs' signatures."""

from genecompass.tasks.deepce.run import predict
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    predict(snakemake.params.base_method, snakemake.params.task, snakemake.params.species, snakemake.params.seed,
            snakemake.input.prepared, snakemake.output.predictions, snakemake.output.info,
            snakemake.input.get("contextual"), snakemake.input.get("static"), snakemake.input.get("gene_vectors"))
