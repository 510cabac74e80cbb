"""Rule deepce_evaluate: DeepCE's metrics of every method on the held-out drugs."""

from pathlib import Path

import pandas as pd

from genecompass.drug.profiling import evaluate, plot_metrics, read_prepared
from genecompass.utils import atomic_output, logged_to

with logged_to(snakemake.log[0]):
    prepared = read_prepared(Path(snakemake.input.signatures).parent)
    predictions = {m: pd.read_csv(p, sep="\t", dtype={"drug": str, "cell": str, "dose": str})
                   for m, p in zip(snakemake.params.methods, snakemake.input.predictions)}
    tables = evaluate(prepared, predictions, tuple(snakemake.params.precision_k))
    for name in ("metrics", "per_profile"):
        with atomic_output(snakemake.output[name]) as tmp:
            tables[name].to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    plot_metrics(tables["metrics"], snakemake.output.figure)
    print(tables["metrics"].to_string())
