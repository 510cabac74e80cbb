"""The CPA task's rules, one function each: files in, files out (the logic: :mod:`.dose_response`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from genecompass.tasks.cpa import dose_response
from genecompass.utils import atomic_output, write_json


def prepare(entry: dict, task: dict, seed: int, data_path, smiles_path, outdir, out_report) -> dict:
    """Rule ``cpa_prepare``: a dose-response dataset (CPA's AnnData layout or an L1000 plate) split into
    train / test / out-of-distribution doses, with its DE genes, written to ``outdir``."""
    from genecompass.drug.data import read_smiles_table

    prepared, report = dose_response.prepare(entry, data_path, task, seed, read_smiles_table(smiles_path))
    dose_response.write_prepared(prepared, outdir)
    write_json(report, out_report)
    print(report)
    return report


def predict(method: str, task: dict, species: str, seed: int, prepared_file, out_predictions, out_curves, out_info,
            smiles_path=None, contextual=None, static=None) -> dict:
    """Rule ``cpa_predict``: one method's predicted mean and variance of every treated condition, and its
    dose-response curves. GeneCompass methods read the gene-embedding tables (``contextual``, ``static``)."""
    from genecompass.drug.data import read_smiles_table
    from genecompass.embedding_files import read_symbol_vectors

    prepared = dose_response.read_prepared(Path(prepared_file).parent)
    smiles = read_smiles_table(smiles_path) if smiles_path else None
    symbols = read_symbol_vectors(contextual, static, species) if contextual else None
    predictions, curves, info = dose_response.run_method(method, prepared, smiles, seed, task.get("model", {}),
                                                         symbols)
    with atomic_output(out_predictions) as tmp:
        predictions.write_h5ad(tmp)
    with atomic_output(out_curves) as tmp:
        curves.to_csv(tmp, sep="\t", index=False)
    write_json(info, out_info)
    return info


def evaluate(methods: list[str], prepared_file, prediction_files, curve_files, min_truth_range: float, out_metrics,
             out_per_condition, out_curve_scores, out_figure, truth_path=None) -> pd.DataFrame:
    """Rule ``cpa_evaluate``: R² of means and variances per split and method, the dose-response shape scores
    against the noise-free truth (when given), and the figure."""
    import anndata as ad

    prepared = dose_response.read_prepared(Path(prepared_file).parent)
    predictions = {m: ad.read_h5ad(p) for m, p in zip(methods, prediction_files)}
    curves = {m: pd.read_csv(p, sep="\t") for m, p in zip(methods, curve_files)}
    for table in curves.values():
        for key in prepared.covariates:
            table[key] = table[key].astype(str)
    truth = pd.read_csv(truth_path, sep="\t", index_col=[0, 1, 2]) if truth_path else None
    per_condition = dose_response.evaluate(prepared, predictions)
    summary = dose_response.aggregate(per_condition)
    scores = (dose_response.curve_shape_scores(curves, truth, prepared.covariates, min_truth_range)
              if truth is not None else pd.DataFrame(columns=["method", "shape_r2"]))
    if len(scores):
        shape = scores.groupby("method")["shape_r2"].agg(["mean", "median"]).add_prefix("dose_response_shape_r2_")
        summary = summary.merge(shape, left_on="method", right_index=True, how="left")
    for table, path in ((summary, out_metrics), (per_condition, out_per_condition), (scores, out_curve_scores)):
        with atomic_output(path) as tmp:
            table.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    dose_response.plot_dose_response(prepared, curves, truth, out_figure)
    print(summary.to_string())
    return summary
