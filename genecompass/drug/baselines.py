"""Honest baselines of both drug tasks: Train Mean, and ridge regression on drug
fingerprints + dose (+ covariates)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from genecompass.drug.molecules import morgan_fingerprints

RIDGE_ALPHAS = np.logspace(-2, 4, 13)


def fingerprint_table(drugs, smiles: dict[str, str], n_bits: int = 1024) -> pd.DataFrame:
    """Morgan bits per drug (rows); a drug without SMILES is an error the caller reports earlier."""
    drugs = sorted(set(drugs))
    return pd.DataFrame(morgan_fingerprints([smiles[d] for d in drugs], n_bits=n_bits, names=drugs), index=drugs)


def design_matrix(drugs, doses, covariates: pd.DataFrame, fingerprints: pd.DataFrame,
                  levels: dict[str, list[str]], dose_reference: float) -> np.ndarray:
    """Ridge features: fingerprint bits, bits x log dose (a drug-specific dose slope), log dose,
    and one-hot covariates. Controls (no fingerprint row) get zero bits and dose."""
    drugs, doses = np.asarray(drugs), np.asarray(doses, float)
    bits = fingerprints.reindex(drugs).fillna(0.0).to_numpy(np.float32)
    log_dose = np.where(doses > 0, np.log10(np.maximum(doses, 1e-12) / dose_reference), 0.0)[:, None]
    onehots = [(covariates[key].to_numpy()[:, None] == np.asarray(values)[None, :]).astype(np.float32)
               for key, values in levels.items()]
    return np.hstack([bits, bits * log_dose, log_dose, (doses > 0)[:, None], *onehots])


def fit_ridge(features: np.ndarray, targets: np.ndarray):
    """Ridge with the penalty chosen by efficient leave-one-out over RIDGE_ALPHAS."""
    from sklearn.linear_model import RidgeCV

    return RidgeCV(alphas=RIDGE_ALPHAS).fit(features, targets)


def group_mean_var(X: np.ndarray, labels: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Per label: mean, variance (ddof 0; 0 for a single sample) and count of the rows."""
    frame = pd.DataFrame(X)
    grouped = frame.groupby(labels, sort=True)
    return grouped.mean(), grouped.var(ddof=0).fillna(0.0), grouped.size()
