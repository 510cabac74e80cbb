"""Rule perturbation_evaluate: every metric of every method, per condition and per subgroup."""

from genecompass.tasks.perturbation.run import evaluate
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    evaluate(snakemake.params.methods, snakemake.input.prepared, snakemake.input.predictions,
             snakemake.output.metrics, snakemake.output.per_condition, snakemake.output.variance,
             snakemake.output.comparison, snakemake.output.figure)
