"""Rule perturbation_evaluate: every metric of every method, per condition and per subgroup."""

from pathlib import Path

import pandas as pd

from genecompass.perturb.metrics import plot_pearson_delta
from genecompass.perturb.task import evaluate_methods, read_prepared
from genecompass.utils import atomic_output, logged_to

with logged_to(snakemake.log[0]):
    prepared = read_prepared(Path(snakemake.input.prepared).parent)
    predictions = {method: pd.read_csv(path, sep="\t", index_col="condition")
                   for method, path in zip(snakemake.params.methods, snakemake.input.predictions)}
    tables = evaluate_methods(prepared, predictions)
    print(tables["metrics"].to_string(index=False))
    print(tables["variance"].to_string(index=False))
    empty = pd.DataFrame(columns=["comparison", "subgroup", "share", "n_conditions"])
    for key, path in [("metrics", snakemake.output.metrics), ("per_condition", snakemake.output.per_condition),
                      ("variance", snakemake.output.variance)]:
        with atomic_output(path) as tmp:
            tables[key].to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    with atomic_output(snakemake.output.comparison) as tmp:
        tables.get("comparison", empty).to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    plot_pearson_delta(tables["metrics"], snakemake.output.figure)
