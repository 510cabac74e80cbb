"""Rule cpa_evaluate: R² of means and variances per split, dose-response shape scores, figure."""

from genecompass.tasks.cpa.run import evaluate
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    evaluate(snakemake.params.methods, snakemake.input.prepared, snakemake.input.predictions, snakemake.input.curves,
             snakemake.params.min_truth_range, snakemake.output.metrics, snakemake.output.per_condition,
             snakemake.output.curve_scores, snakemake.output.figure, snakemake.input.get("truth"))
