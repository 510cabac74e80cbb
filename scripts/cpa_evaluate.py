"""Rule cpa_evaluate: R² of means and variances per split, dose-response shape scores, figure."""

from pathlib import Path

import anndata as ad
import pandas as pd

from genecompass.drug.dose_response import (
    aggregate,
    curve_shape_scores,
    evaluate,
    plot_dose_response,
    read_prepared,
)
from genecompass.utils import atomic_output, logged_to

with logged_to(snakemake.log[0]):
    prepared = read_prepared(Path(snakemake.input.prepared).parent)
    methods = snakemake.params.methods
    predictions = {m: ad.read_h5ad(p) for m, p in zip(methods, snakemake.input.predictions)}
    curves = {m: pd.read_csv(p, sep="\t") for m, p in zip(methods, snakemake.input.curves)}
    for table in curves.values():
        for key in prepared.covariates:
            table[key] = table[key].astype(str)
    truth = None
    if "truth" in snakemake.input.keys():
        truth = pd.read_csv(snakemake.input.truth, sep="\t", index_col=[0, 1, 2])
    per_condition = evaluate(prepared, predictions)
    summary = aggregate(per_condition)
    scores = (curve_shape_scores(curves, truth, prepared.covariates, snakemake.params.min_truth_range)
              if truth is not None else pd.DataFrame(columns=["method", "shape_r2"]))
    if len(scores):
        shape = scores.groupby("method")["shape_r2"].agg(["mean", "median"]).add_prefix("dose_response_shape_r2_")
        summary = summary.merge(shape, left_on="method", right_index=True, how="left")
    for name, table in (("metrics", summary), ("per_condition", per_condition), ("curve_scores", scores)):
        with atomic_output(snakemake.output[name]) as tmp:
            table.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    plot_dose_response(prepared, curves, truth, snakemake.output.figure)
    print(summary.to_string())
