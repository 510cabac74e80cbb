"""Rule dosage_logistic: logistic regression on the static knowledge embeddings, same gene folds."""

from genecompass.tasks.dosage.run import logistic_folds
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    logistic_folds(snakemake.params.task, snakemake.params.seed, snakemake.input.knowledge,
                   snakemake.input.dictionary, snakemake.input.labels, snakemake.output.folds,
                   snakemake.output.predictions)
