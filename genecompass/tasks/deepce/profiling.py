"""The DeepCE task end to end: expression-change signatures from an L1000 plate,
a split that holds out whole drugs, the methods (DeepCE with its own gene
features, DeepCE with GeneCompass gene embeddings, Train Mean, ridge on
fingerprints) and DeepCE's metrics.

A signature is the change of a (cell line, drug, dose) against the median of
the plate's vehicle wells of the same cell line, averaged over replicate wells.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from genecompass.drug import baselines
from genecompass.drug.data import load_dose_response, read_smiles_table
from genecompass.tasks.deepce.methods import METHODS
from genecompass.tasks.deepce.metrics import profile_metrics


def dose_label(dose: float) -> str:
    return f"{dose:g}"


@dataclass
class Prepared:
    signatures: ad.AnnData   # obs drug, drug_name, cell, dose, split; X changes (profiles x landmark genes)
    smiles: dict[str, str]

    def table(self, split: str) -> pd.DataFrame:
        obs = self.signatures.obs
        return obs.loc[obs["split"] == split, ["drug", "cell", "dose"]].reset_index(drop=True)

    def values(self, split: str) -> np.ndarray:
        return np.asarray(self.signatures.X)[(self.signatures.obs["split"] == split).to_numpy()]


def signatures(adata: ad.AnnData, cell_key: str) -> ad.AnnData:
    """Per (cell line, drug, dose): mean over wells of (well - median vehicle well of that cell line)."""
    X = np.asarray(adata.X, np.float64)
    obs = adata.obs
    change = np.empty_like(X)
    for _, group in obs.groupby(cell_key, observed=True):
        rows = obs.index.get_indexer(group.index)
        change[rows] = X[rows] - np.median(X[rows][group["control"].to_numpy()], axis=0)
    treated = ~obs["control"].to_numpy()
    labels = obs.loc[treated, cell_key].astype(str) + "|" + obs.loc[treated, "drug"] + "|" + \
        obs.loc[treated, "dose"].map(dose_label)
    means, _, counts = baselines.group_mean_var(change[treated], labels.to_numpy())
    first = obs[treated].groupby(labels.to_numpy()).first().loc[means.index]
    meta = pd.DataFrame({"drug": first["drug"].to_numpy(), "drug_name": first["drug_name"].to_numpy(),
                         "cell": first[cell_key].astype(str).to_numpy(),
                         "dose": first["dose"].map(dose_label).to_numpy(), "n_wells": counts.to_numpy()},
                        index=means.index)
    return ad.AnnData(means.to_numpy(np.float32), obs=meta, var=adata.var[["gene_symbol"]].copy())


def split_drugs(drugs, test_fraction: float, val_fraction: float, seed: int) -> dict[str, str]:
    """Whole drugs to train / val / test (DeepCE holds out compounds, not wells)."""
    drugs = sorted(set(drugs))
    order = np.random.default_rng(seed).permutation(len(drugs))
    n_test = max(1, round(test_fraction * len(drugs)))
    n_val = max(1, round(val_fraction * len(drugs)))
    parts = {}
    for rank, index in enumerate(order):
        parts[drugs[index]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return parts


def prepare(entry: dict, path, smiles_path, task: dict, seed: int) -> tuple[Prepared, dict]:
    adata = load_dose_response({**entry, "format": entry.get("format", "l1000")}, path)
    smiles = read_smiles_table(smiles_path)
    cell_key = adata.uns["covariate_keys"][0]
    table = signatures(adata, cell_key)
    without = sorted(set(table.obs["drug"]) - set(smiles))
    table = table[table.obs["drug"].isin(smiles).to_numpy()].copy()
    split = task.get("split") or {}
    parts = split_drugs(table.obs["drug"], split.get("test_fraction", 0.2), split.get("val_fraction", 0.1), seed)
    table.obs["split"] = table.obs["drug"].map(parts)
    report = {"n_signatures": int(table.n_obs), "n_genes": int(table.n_vars),
              "n_drugs": int(table.obs["drug"].nunique()), "drugs_without_smiles": without,
              "cell_lines": sorted(table.obs["cell"].unique()), "doses": sorted(table.obs["dose"].unique(), key=float),
              "drugs_per_split": pd.Series(parts).value_counts().to_dict(),
              "signatures_per_split": table.obs["split"].value_counts().to_dict()}
    used = {d: smiles[d] for d in sorted(table.obs["drug"].unique())}
    return Prepared(table, used), report


def write_prepared(prepared: Prepared, outdir) -> None:
    from genecompass.utils import atomic_output, write_json

    out = Path(outdir)
    with atomic_output(out / "signatures.h5ad") as tmp:
        prepared.signatures.write_h5ad(tmp, compression="gzip")
    write_json(prepared.smiles, out / "smiles.json")


def read_prepared(outdir) -> Prepared:
    out = Path(outdir)
    signatures = ad.read_h5ad(out / "signatures.h5ad")
    for column in ("drug", "drug_name", "cell", "dose", "split"):  # h5ad stores strings as categories
        signatures.obs[column] = signatures.obs[column].astype(str)
    return Prepared(signatures, json.loads((out / "smiles.json").read_text()))


def read_gene_vectors(path) -> pd.DataFrame:
    """DeepCE's gene-feature CSV: symbol, then one column per dimension, no header; upper-cased symbols."""
    from genecompass.errors import InputError

    table = pd.read_csv(path, header=None, index_col=0)
    if table.shape[1] < 2 or not all(np.issubdtype(t, np.number) for t in table.dtypes):
        raise InputError(path, "columns", "expected a gene symbol then numeric dimensions on each line",
                         "use DeepCE's gene_vector file layout (symbol,v1,...,vd)")
    table.index = table.index.astype(str).str.upper()
    return table[~table.index.duplicated()]


def run_method(method: str, prepared: Prepared, seed: int, model_config: dict | None = None,
               gene_table: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict]:
    """Predicted changes of the test signatures (rows as in ``prepared.table('test')``) and a run record.

    ``gene_table`` (upper-case symbol -> vector) is DeepCE's own gene features for ``deepce`` and the
    GeneCompass embeddings for ``genecompass_deepce``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown DeepCE-task method {method!r}; use one of {METHODS}")
    train, val, test = (prepared.table(s) for s in ("train", "val", "test"))
    y_train, y_val = prepared.values("train"), prepared.values("val")
    symbols = list(prepared.signatures.var["gene_symbol"])
    info: dict = {"method": method, "seed": seed, "n_train": len(train), "n_val": len(val), "n_test": len(test)}
    if method == "train_mean":
        predicted = train_mean(train, y_train, test)
    elif method == "ridge_fingerprint":
        fit = pd.concat([train, val])
        fingerprints = baselines.fingerprint_table(list(prepared.smiles), prepared.smiles)
        levels = {"cell": sorted(prepared.signatures.obs["cell"].unique())}
        reference = float(np.median(prepared.signatures.obs["dose"].astype(float)))

        def design(table):
            return baselines.design_matrix(table["drug"], table["dose"].astype(float), table, fingerprints, levels,
                                           reference)

        model = baselines.fit_ridge(design(fit), np.vstack([y_train, y_val]))
        info["alpha"] = float(model.alpha_)
        predicted = model.predict(design(test))
    else:
        from genecompass.embedding_files import genecompass_vectors
        from genecompass.tasks.deepce.model import DeepCE, DeepceSettings

        if gene_table is None:
            raise ValueError(f"{method} needs a gene-feature table")
        vectors, missing = genecompass_vectors(symbols, gene_table)
        info["genes_without_vector"] = int(missing.sum())
        settings = DeepceSettings.from_config(model_config, seed)
        obs = prepared.signatures.obs
        model = DeepCE(prepared.smiles, vectors, sorted(obs["cell"].unique()),
                       sorted(obs["dose"].unique(), key=float), settings, gene_missing=missing)
        info["history"] = model.fit(train, y_train, val, y_val)
        info["settings"] = model.settings_dict()
        predicted = model.predict(test)
    frame = pd.DataFrame(np.asarray(predicted, np.float32), columns=prepared.signatures.var_names)
    return pd.concat([test, frame], axis=1), info


def train_mean(train: pd.DataFrame, y_train: np.ndarray, test: pd.DataFrame) -> np.ndarray:
    """Mean training signature of the same cell line and dose (of the cell line when the dose is unseen)."""
    rows = []
    for _, row in test.iterrows():
        same_cell = (train["cell"] == row["cell"]).to_numpy()
        mask = same_cell & (train["dose"] == row["dose"]).to_numpy()
        rows.append(y_train[mask if mask.any() else same_cell].mean(0))
    return np.vstack(rows)


# ---------------------------------------------------------------- evaluation


def evaluate(prepared: Prepared, predictions: dict[str, pd.DataFrame], ks=(10, 50, 100)) -> dict[str, pd.DataFrame]:
    test = prepared.table("test")
    truth = prepared.values("test")
    genes = list(prepared.signatures.var_names)
    frames = []
    for method, table in predictions.items():
        merged = test.merge(table, on=["drug", "cell", "dose"], how="left", validate="one_to_one")
        if merged[genes].isna().any().any():
            raise ValueError(f"{method}: predictions miss test signatures")
        scores = profile_metrics(truth, merged[genes].to_numpy(float), ks)
        frames.append(pd.concat([test.assign(method=method), scores], axis=1))
    per_profile = pd.concat(frames, ignore_index=True)
    columns = [c for c in per_profile.columns if c not in ("drug", "cell", "dose", "method")]
    summary = per_profile.groupby("method")[columns].mean()
    summary["n_profiles"] = per_profile.groupby("method").size()
    summary["n_test_drugs"] = per_profile.groupby("method")["drug"].nunique()
    return {"per_profile": per_profile, "metrics": summary.reset_index()}


def plot_metrics(metrics: pd.DataFrame, path) -> None:
    from genecompass.plotting import plt, save_figure

    shown = ["pearson", "spearman", *[c for c in metrics.columns if c.startswith("precision")][:2], "rmse"]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.0 * len(shown), 3.2))
    for ax, metric in zip(axes, shown):
        ax.bar(range(len(metrics)), metrics[metric], color="grey")
        ax.set_xticks(range(len(metrics)))
        ax.set_xticklabels(metrics["method"], rotation=60, ha="right", fontsize=7)
        ax.set_title(metric, fontsize=9)
    fig.suptitle("Held-out drugs: mean over test signatures", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
