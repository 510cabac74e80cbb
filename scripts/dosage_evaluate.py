"""Rule dosage_evaluate: ROC-AUC mean ± sd over folds of every method, and the ROC figure."""

from genecompass.tasks.dosage.run import evaluate
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    evaluate(list(snakemake.params.methods), snakemake.input.folds, snakemake.input.predictions,
             snakemake.output.metrics, snakemake.output.roc)
