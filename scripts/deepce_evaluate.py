"""Rule deepce_evaluate: DeepCE's metrics of every method on the held-out drugs."""

from genecompass.tasks.deepce.run import evaluate
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    evaluate(snakemake.params.methods, snakemake.input.signatures, snakemake.input.predictions,
             snakemake.params.precision_k, snakemake.output.metrics, snakemake.output.per_profile,
             snakemake.output.figure)
