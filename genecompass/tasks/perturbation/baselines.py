"""Baselines of the train-mean benchmark (Csendes et al. 2025): Train Mean, and random
forest / elastic net / kNN regressors from perturbed-gene features to pseudo-bulk profiles.

A condition's features are the sum of its genes' feature vectors (PCA of GO
membership, or GeneCompass gene embeddings reduced the same way); targets are
the conditions' mean log profiles. The hyper-parameter the benchmark tuned
(trees, l1_ratio, k) is chosen on the validation conditions by mean Pearson
delta, then the model is refitted on the training conditions with it.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import ElasticNet
from sklearn.neighbors import KNeighborsRegressor

from genecompass.tasks.perturbation.data import condition_genes
from genecompass.tasks.perturbation.methods import REGRESSORS

logger = logging.getLogger(__name__)

GRIDS = {
    "random_forest": [{"n_estimators": n} for n in (50, 100, 200)],
    "elastic_net": [{"l1_ratio": r, "alpha": a} for r in (0.1, 0.5, 0.9) for a in (0.001, 0.01)],
    "knn": [{"n_neighbors": k} for k in (1, 3, 5, 10)],
}


def train_mean(profiles: pd.DataFrame, train: list[str], conditions: list[str]) -> pd.DataFrame:
    """The mean training pseudo-bulk profile (control excluded), predicted for every condition."""
    mean = profiles.loc[[c for c in train if c != "ctrl"]].mean(axis=0)
    return pd.DataFrame([mean.to_numpy()] * len(conditions), index=list(conditions), columns=profiles.columns)


def reduce_features(features: pd.DataFrame, n_components: int, seed: int) -> pd.DataFrame:
    n = min(n_components, *features.shape)
    return pd.DataFrame(PCA(n, random_state=seed).fit_transform(features.to_numpy()), index=features.index)


def condition_features(features: pd.DataFrame, conditions: list[str]) -> np.ndarray:
    """Summed feature vectors of each condition's perturbed genes."""
    return np.vstack([features.loc[condition_genes(c)].to_numpy().sum(axis=0) for c in conditions])


def _model(kind: str, params: dict, seed: int):
    if kind == "random_forest":
        return RandomForestRegressor(random_state=seed, n_jobs=1, **params)
    if kind == "elastic_net":
        return ElasticNet(random_state=seed, max_iter=5000, **params)
    if kind == "knn":
        return KNeighborsRegressor(**params)
    raise ValueError(f"unknown regressor {kind!r}; use one of {REGRESSORS}")


def _mean_pearson_delta(predicted: np.ndarray, truth: np.ndarray, control: np.ndarray) -> float:
    scores = []
    for p, t in zip(predicted - control, truth - control):
        if p.std() > 0 and t.std() > 0:
            scores.append(np.corrcoef(p, t)[0, 1])
        else:
            scores.append(0.0)
    return float(np.mean(scores))


def regression_baseline(kind: str, features: pd.DataFrame, profiles: pd.DataFrame, train: list[str],
                        val: list[str], conditions: list[str], seed: int) -> tuple[pd.DataFrame, dict]:
    """Fit ``kind`` on the training conditions, tune on validation, predict ``conditions``."""
    train = [c for c in train if c != "ctrl"]
    X_train, Y_train = condition_features(features, train), profiles.loc[train].to_numpy()
    control = profiles.loc["ctrl"].to_numpy()
    scores = []
    for params in GRIDS[kind]:
        model = _model(kind, {**params, **({"n_neighbors": min(params["n_neighbors"], len(train))}
                                            if kind == "knn" else {})}, seed)
        model.fit(X_train, Y_train)
        score = (_mean_pearson_delta(model.predict(condition_features(features, val)), profiles.loc[val].to_numpy(),
                                     control) if val else 0.0)
        scores.append(score)
        logger.info("%s %s: validation Pearson delta %.4f", kind, params, score)
    best = GRIDS[kind][int(np.argmax(scores))]
    if kind == "knn":
        best = {"n_neighbors": min(best["n_neighbors"], len(train))}
    model = _model(kind, best, seed).fit(X_train, Y_train)
    predicted = pd.DataFrame(model.predict(condition_features(features, conditions)), index=list(conditions),
                             columns=profiles.columns)
    return predicted, {"chosen": best, "validation_pearson_delta": dict(zip(map(str, GRIDS[kind]), scores))}
