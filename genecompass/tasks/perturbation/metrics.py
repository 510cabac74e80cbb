"""Perturbation-prediction metrics (GeneCompass Fig. 5, GEARS, and the train-mean benchmark),
and the perturbation-specific variance of a dataset.

All metrics compare pseudo-bulk profiles: the mean predicted and the mean true
log expression of a held-out condition, and changes relative to the mean
control profile.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import pearsonr, spearmanr

from genecompass.tasks.perturbation.data import condition_genes

METRICS = ("mse_top20_de", "deviation_top20_de", "spearman_delta", "wrong_direction_top20_de",
           "pearson", "pearson_delta", "pearson_delta_top20_de", "pearson_delta_top20_de_no_target")


def _corr(fn, a, b) -> float:
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(fn(a, b)[0])


def condition_metrics(predicted: pd.Series, truth: pd.Series, control: pd.Series, de_genes: list[str],
                      condition: str) -> dict:
    """Every metric of one held-out condition."""
    pred_delta = predicted - control
    true_delta = truth - control
    de = [g for g in de_genes if g in truth.index]
    targets = set(condition_genes(condition))
    de_no_target = [g for g in de if g not in targets]
    error = (predicted[de] - truth[de]).to_numpy()
    return {
        "mse_top20_de": float(np.mean(error ** 2)),
        "deviation_top20_de": float(np.abs(error).sum()),
        "spearman_delta": _corr(spearmanr, pred_delta.to_numpy(), true_delta.to_numpy()),
        "wrong_direction_top20_de": int((np.sign(pred_delta[de]) != np.sign(true_delta[de])).sum()),
        "pearson": _corr(pearsonr, predicted.to_numpy(), truth.to_numpy()),
        "pearson_delta": _corr(pearsonr, pred_delta.to_numpy(), true_delta.to_numpy()),
        "pearson_delta_top20_de": _corr(pearsonr, pred_delta[de].to_numpy(), true_delta[de].to_numpy()),
        "pearson_delta_top20_de_no_target": _corr(pearsonr, pred_delta[de_no_target].to_numpy(),
                                                  true_delta[de_no_target].to_numpy()),
    }


def evaluate(predictions: pd.DataFrame, truth: pd.DataFrame, de_genes: dict[str, list[str]],
             subgroup: dict[str, str]) -> pd.DataFrame:
    """Per-condition metrics of one method (rows: the held-out conditions it predicted)."""
    control = truth.loc["ctrl"]
    rows = []
    for condition in predictions.index:
        rows.append({"condition": condition, "subgroup": subgroup.get(condition, ""),
                     "n_genes_perturbed": len(condition_genes(condition)),
                     **condition_metrics(predictions.loc[condition, truth.columns], truth.loc[condition], control,
                                         de_genes[condition], condition)})
    return pd.DataFrame(rows)


def aggregate(per_condition: pd.DataFrame) -> pd.DataFrame:
    """Mean of each metric per method and subgroup ('all' too); wrong directions are also summed."""
    frames = []
    for scope, table in [("all", per_condition), *per_condition.groupby("subgroup")]:
        summary = table.groupby("method")[list(METRICS)].mean()
        summary["wrong_direction_top20_de_total"] = table.groupby("method")["wrong_direction_top20_de"].sum()
        summary["n_conditions"] = table.groupby("method").size()
        summary.insert(0, "subgroup", scope)
        frames.append(summary.reset_index())
    return pd.concat(frames, ignore_index=True)


def smaller_deviation_share(per_condition: pd.DataFrame, method: str, reference: str) -> pd.DataFrame:
    """Share of held-out conditions where ``method`` has the smaller top-20 DE deviation than ``reference``."""
    wide = per_condition.pivot_table(index=["condition", "subgroup"], columns="method",
                                     values="deviation_top20_de").reset_index()
    wide["better"] = wide[method] < wide[reference]
    rows = [{"subgroup": "all", "share": float(wide["better"].mean()), "n_conditions": len(wide)}]
    for scope, table in wide.groupby("subgroup"):
        rows.append({"subgroup": scope, "share": float(table["better"].mean()), "n_conditions": len(table)})
    out = pd.DataFrame(rows)
    out.insert(0, "comparison", f"{method} < {reference}")
    return out


def perturbation_variance(profiles: pd.DataFrame) -> dict:
    """How much the perturbations differ (the train-mean benchmark's diagnostic).

    ``profiles``: pseudo-bulk log profiles with a 'ctrl' row. Returns the median
    pairwise Pearson correlation of the change profiles (high: perturbations
    look alike, Train Mean is hard to beat), the share of the change variance that
    is specific to a perturbation (not shared by their mean), and the mean
    absolute change.
    """
    deltas = profiles.drop(index="ctrl") - profiles.loc["ctrl"]
    values = deltas.to_numpy()
    corr = np.corrcoef(values)
    pairs = corr[np.triu_indices(len(values), 1)]
    shared = values.mean(axis=0)
    specific = ((values - shared) ** 2).sum()
    return {"n_perturbations": int(len(values)),
            "median_pairwise_delta_pearson": float(np.median(pairs)),
            "perturbation_specific_variance_share": float(specific / max((values ** 2).sum(), 1e-12)),
            "mean_abs_delta": float(np.abs(values).mean())}


def plot_pearson_delta(summary: pd.DataFrame, path) -> None:
    """Bar chart of mean Pearson delta per method and subgroup."""
    from genecompass.plotting import plt, save_figure

    wide = summary.pivot_table(index="method", columns="subgroup", values="pearson_delta")
    wide = wide.sort_values("all") if "all" in wide else wide
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(wide) + 1.5))
    wide.plot.barh(ax=ax, width=0.8)
    ax.set_xlabel("mean Pearson delta over held-out conditions")
    ax.axvline(0, color="black", linewidth=0.5)
    ax.legend(title="subgroup", fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
