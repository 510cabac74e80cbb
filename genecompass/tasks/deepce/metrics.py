"""DeepCE's per-profile metrics: RMSE, Pearson and Spearman across genes, precision@k of the top genes."""

from __future__ import annotations

import numpy as np
import pandas as pd

METRICS = ("rmse", "pearson", "spearman")


def row_pearson(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Pearson correlation across genes of each row pair (0 where a row is constant)."""
    p = predicted - predicted.mean(1, keepdims=True)
    t = truth - truth.mean(1, keepdims=True)
    denominator = np.sqrt((p ** 2).sum(1) * (t ** 2).sum(1))
    return np.where(denominator > 0, (p * t).sum(1) / np.maximum(denominator, 1e-30), 0.0)


def profile_metrics(truth: np.ndarray, predicted: np.ndarray, ks=(10, 50, 100)) -> pd.DataFrame:
    """DeepCE's per-profile metrics: RMSE, Pearson, Spearman, and precision@k of the top-k up- and
    down-regulated genes (share of the true top k among the predicted top k)."""
    from scipy.stats import spearmanr

    pearson = row_pearson(np.asarray(predicted, float), np.asarray(truth, float))
    rows = []
    for t, p, r in zip(truth, predicted, pearson):
        row = {"rmse": float(np.sqrt(np.mean((t - p) ** 2))), "pearson": float(r),
               "spearman": float(spearmanr(t, p)[0]) if t.std() > 0 and p.std() > 0 else 0.0}
        for k in ks:
            k = min(k, len(t))
            for direction, sign in (("up", -1), ("down", 1)):
                true_top = set(np.argsort(sign * t, kind="stable")[:k])
                predicted_top = set(np.argsort(sign * p, kind="stable")[:k])
                row[f"precision{k}_{direction}"] = len(true_top & predicted_top) / k
        rows.append(row)
    return pd.DataFrame(rows)
