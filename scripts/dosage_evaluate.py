"""Rule dosage_evaluate: ROC-AUC mean ± sd over folds of every method, and the ROC figure."""

import pandas as pd

from genecompass.insilico.dosage import plot_roc, summarise
from genecompass.utils import atomic_output, logged_to

with logged_to(snakemake.log[0]):
    methods = list(snakemake.params.methods)
    folds = {m: pd.read_csv(p, sep="\t") for m, p in zip(methods, snakemake.input.folds, strict=True)}
    predictions = {m: pd.read_csv(p, sep="\t") for m, p in zip(methods, snakemake.input.predictions, strict=True)}
    metrics = summarise(folds)
    print(metrics.round(4).to_string())
    with atomic_output(snakemake.output.metrics) as tmp:
        metrics.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    plot_roc(predictions, snakemake.output.roc, title="Dosage-sensitive vs insensitive TFs (5-fold CV over genes)")
