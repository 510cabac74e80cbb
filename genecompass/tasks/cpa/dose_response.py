"""The CPA task end to end: split a dose-response data set, run a method (CPA, CPA
with GeneCompass gene embeddings, Train Mean, ridge on fingerprints), and score
every method with CPA's R² of means and variances and on the dose-response curve.

Splits follow CPA: ``ood`` holds every treated sample at the held-out doses
(unseen drug–dose combinations), the rest is split at random into ``train``,
``val`` (model selection) and ``test``. Predictions are counterfactual: a
condition (covariates, drug, dose) is predicted from the training control
samples of its covariates, as CPA's R² evaluation does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from genecompass.drug import baselines
from genecompass.drug.data import CONTROL, condition_key, load_dose_response
from genecompass.errors import InputError
from genecompass.tasks.cpa.methods import METHODS, method_uses_genecompass
from genecompass.tasks.perturbation.data import rank_de_genes

SPLITS = ("train", "test", "ood")


@dataclass
class Prepared:
    adata: ad.AnnData                   # samples x genes; obs drug, dose, control, covariates, split, condition
    covariates: list[str]
    de_genes: dict[str, list[str]]      # condition -> top DE genes against its covariates' controls
    curve_genes: dict[str, list[str]]   # 'cov|drug' -> genes whose dose-response is drawn and scored

    def conditions(self) -> pd.DataFrame:
        """Every treated condition once: condition, covariates, drug, dose."""
        obs = self.adata.obs[~self.adata.obs["control"]]
        return obs[["condition", *self.covariates, "drug", "dose"]].drop_duplicates("condition").reset_index(drop=True)

    def controls(self, covariates: dict[str, str], split: str = "train") -> np.ndarray:
        obs = self.adata.obs
        mask = obs["control"].to_numpy() & (obs["split"] == split).to_numpy()
        for key, value in covariates.items():
            mask &= (obs[key] == value).to_numpy()
        return np.asarray(self.adata.X[mask])


def assign_split(obs: pd.DataFrame, ood_doses, test_fraction: float, val_fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    split = np.full(len(obs), "train", dtype=object)
    draw = rng.random(len(obs))
    split[draw < test_fraction + val_fraction] = "val"
    split[draw < test_fraction] = "test"
    doses = obs["dose"].to_numpy(float)
    ood = ~obs["control"].to_numpy() & np.isclose(doses[:, None], np.asarray(ood_doses or [], float)[None, :],
                                                  rtol=1e-3).any(axis=1) if ood_doses else np.zeros(len(obs), bool)
    split[ood] = "ood"
    return split.astype(str)


def prepare(entry: dict, path, task: dict, seed: int, smiles: dict[str, str] | None = None) -> tuple[Prepared, dict]:
    """Load and split a dataset; with ``smiles``, drugs without one are dropped (the fingerprint
    baseline needs them, and every method must see the same conditions)."""
    adata = load_dose_response(entry, path)
    without = []
    if smiles is not None:
        treated = ~adata.obs["control"].to_numpy()
        without = sorted(set(adata.obs.loc[treated, "drug"]) - set(smiles))
        adata = adata[~(treated & adata.obs["drug"].isin(without).to_numpy())].copy()
    covariates = adata.uns["covariate_keys"]
    split = task.get("split") or {}
    ood_doses = entry.get("ood_doses") or []
    measured = sorted(adata.obs.loc[~adata.obs["control"], "dose"].unique())
    unknown = [d for d in ood_doses if not np.isclose(d, measured, rtol=1e-3).any()]
    if unknown:
        raise InputError(path, "ood_doses", f"doses {unknown} are not among the measured doses {measured}",
                         "hold out measured doses")
    adata.obs["split"] = assign_split(adata.obs, ood_doses, split.get("test_fraction", 0.15),
                                      split.get("val_fraction", 0.1), seed)
    adata.obs["condition"] = condition_key(adata.obs, covariates).to_numpy()
    n_de, n_curve = int(task.get("n_de_genes", 50)), int(task.get("n_curve_genes", 3))
    de_genes, curve_genes = {}, {}
    X = np.asarray(adata.X)
    for _, group in adata.obs.groupby(covariates, observed=True):
        rows = adata.obs.index.get_indexer(group.index)
        labels = np.where(group["control"], CONTROL, group["condition"])
        ranked = rank_de_genes(X[rows], labels, CONTROL, adata.var_names, n_de)
        de_genes.update(ranked)
        for drug, cells in group[~group["control"]].groupby("drug"):
            top = cells.loc[cells["dose"] == cells["dose"].max(), "condition"].iloc[0]
            curve_genes[top.rsplit("|", 2)[0] + "|" + drug] = ranked[top][:n_curve]
    prepared = Prepared(adata, covariates, de_genes, curve_genes)
    report = {"n_samples": int(adata.n_obs), "n_genes": int(adata.n_vars),
              "n_drugs": int(adata.obs.loc[~adata.obs["control"], "drug"].nunique()),
              "doses": [float(d) for d in measured], "ood_doses": ood_doses,
              "samples_per_split": adata.obs["split"].value_counts().to_dict(),
              "conditions_per_split":
                  adata.obs[~adata.obs["control"]].groupby("split")["condition"].nunique().to_dict(),
              "dropped_wells": (adata.uns.get("source") or {}).get("dropped_wells", 0),
              "drugs_without_smiles": without}
    return prepared, report


def write_prepared(prepared: Prepared, outdir) -> None:
    from genecompass.utils import atomic_output, write_json

    out = Path(outdir)
    adata = prepared.adata.copy()
    adata.uns = {"covariate_keys": prepared.covariates}
    with atomic_output(out / "samples.h5ad") as tmp:
        adata.write_h5ad(tmp, compression="gzip")
    write_json({"de_genes": prepared.de_genes, "curve_genes": prepared.curve_genes}, out / "genes.json")


def read_prepared(outdir) -> Prepared:
    out = Path(outdir)
    adata = ad.read_h5ad(out / "samples.h5ad")
    for column in adata.obs.columns:  # h5ad stores strings as categories
        if isinstance(adata.obs[column].dtype, pd.CategoricalDtype):
            adata.obs[column] = adata.obs[column].astype(str)
    genes = json.loads((out / "genes.json").read_text())
    return Prepared(adata, list(adata.uns["covariate_keys"]), genes["de_genes"], genes["curve_genes"])


def dose_grid(prepared: Prepared, n: int = 25) -> np.ndarray:
    doses = prepared.adata.obs.loc[~prepared.adata.obs["control"], "dose"].to_numpy(float)
    return np.unique(np.concatenate([np.geomspace(doses.min(), doses.max(), n), doses]))


# ---------------------------------------------------------------- methods


def run_method(method: str, prepared: Prepared, smiles: dict[str, str] | None, seed: int,
               model_config: dict | None = None, symbol_table: pd.DataFrame | None = None
               ) -> tuple[ad.AnnData, pd.DataFrame, dict]:
    """(predicted mean and variance per treated condition, dose-response curves, run record)."""
    if method not in METHODS:
        raise ValueError(f"unknown CPA-task method {method!r}; use one of {METHODS}")
    if method_uses_genecompass(method) and symbol_table is None:
        raise ValueError(f"{method} needs GeneCompass gene embeddings")
    conditions = prepared.conditions()
    grid = dose_grid(prepared)
    info: dict = {"method": method, "seed": seed, "n_conditions": len(conditions)}
    if method == "train_mean":
        means, variances, curves = _train_mean(prepared, conditions, grid)
    elif method == "ridge_fingerprint":
        means, variances, curves = _ridge(prepared, conditions, grid, smiles)
    else:
        means, variances, curves, fit_info = _cpa(method, prepared, conditions, grid, seed, model_config, symbol_table)
        info.update(fit_info)
    predicted = ad.AnnData(np.asarray(means, np.float32), obs=conditions.set_index("condition"),
                           var=prepared.adata.var[["gene_symbol"]].copy())
    predicted.layers["variance"] = np.asarray(variances, np.float32)
    return predicted, curves, info


def _curve_rows(prepared: Prepared, cov_values: dict, drug: str, grid, values: np.ndarray) -> list[dict]:
    """Long rows (covariates, drug, dose, gene, predicted) of one (covariates, drug)'s curve genes."""
    key = "|".join([*cov_values.values(), drug])
    genes = prepared.adata.var_names
    rows = []
    for gene in prepared.curve_genes.get(key, []):
        column = values[:, genes.get_loc(gene)]
        symbol = prepared.adata.var.loc[gene, "gene_symbol"]
        rows += [{**cov_values, "drug": drug, "dose": float(d), "gene": gene, "symbol": symbol, "predicted": float(v)}
                 for d, v in zip(grid, column)]
    return rows


def _train_mean(prepared: Prepared, conditions: pd.DataFrame, grid):
    """Mean training profile of the drug (any dose) in the same covariates; of the dose when the drug
    is unseen; of all treated training samples of the covariates otherwise."""
    obs = prepared.adata.obs
    train = (obs["split"] == "train").to_numpy() & ~obs["control"].to_numpy()
    X, obs = np.asarray(prepared.adata.X)[train], obs[train]
    means, variances = [], []
    for _, row in conditions.iterrows():
        same_cov = np.ones(len(obs), bool)
        for key in prepared.covariates:
            same_cov &= (obs[key] == row[key]).to_numpy()
        for mask in (same_cov & (obs["drug"] == row["drug"]).to_numpy(),
                     same_cov & np.isclose(obs["dose"].to_numpy(float), row["dose"]), same_cov):
            if mask.any():
                break
        means.append(X[mask].mean(0))
        variances.append(X[mask].var(0))
    curves = []
    # A seen drug's Train Mean does not depend on dose: its curve is flat.
    for index, row in conditions.drop_duplicates([*prepared.covariates, "drug"]).iterrows():
        curves += _curve_rows(prepared, {k: row[k] for k in prepared.covariates}, row["drug"], grid,
                              np.tile(means[index], (len(grid), 1)))
    return np.vstack(means), np.vstack(variances), pd.DataFrame(curves)


def _ridge(prepared: Prepared, conditions: pd.DataFrame, grid, smiles: dict[str, str] | None):
    if not smiles:
        raise ValueError("ridge_fingerprint needs the dataset's SMILES table")
    obs = prepared.adata.obs
    train = (obs["split"] == "train").to_numpy()
    X = np.asarray(prepared.adata.X)[train]
    train_obs = obs[train]
    labels = train_obs["condition"].where(~train_obs["control"], "control|" + condition_key(
        train_obs.assign(drug=CONTROL, dose=0.0), prepared.covariates))
    means, variances, _ = baselines.group_mean_var(X, labels.to_numpy())
    first = train_obs.groupby(labels.to_numpy()).first().loc[means.index]
    missing = sorted(set(conditions["drug"]) - set(smiles))
    if missing:
        raise ValueError(f"ridge_fingerprint: no SMILES for drugs {missing[:5]}")
    fingerprints = baselines.fingerprint_table(conditions["drug"], smiles)
    levels = {k: sorted(obs[k].unique()) for k in prepared.covariates}
    reference = float(np.median(conditions["dose"]))

    def design(table):
        return baselines.design_matrix(table["drug"].to_numpy(), np.where(table["drug"] == CONTROL, 0.0, table["dose"]),
                                       table[prepared.covariates], fingerprints, levels, reference)

    mean_model = baselines.fit_ridge(design(first), means.to_numpy())
    var_model = baselines.fit_ridge(design(first), variances.to_numpy())
    curves = []
    for _, row in conditions.drop_duplicates([*prepared.covariates, "drug"]).iterrows():
        table = pd.DataFrame({**{k: [row[k]] * len(grid) for k in prepared.covariates},
                              "drug": row["drug"], "dose": grid})
        curves += _curve_rows(prepared, {k: row[k] for k in prepared.covariates}, row["drug"], grid,
                              mean_model.predict(design(table)))
    return (mean_model.predict(design(conditions)), np.clip(var_model.predict(design(conditions)), 0, None),
            pd.DataFrame(curves))


def _cpa(method, prepared: Prepared, conditions: pd.DataFrame, grid, seed, model_config, symbol_table):
    from genecompass.embedding_files import genecompass_vectors
    from genecompass.tasks.cpa.model import Cpa, CpaSettings

    config = dict(model_config or {})
    config["gene_decoder"] = "embedding" if method_uses_genecompass(method) else "free"
    settings = CpaSettings.from_config(config, seed)
    obs = prepared.adata.obs
    genes = list(prepared.adata.var["gene_symbol"])
    vectors = genecompass_vectors(genes, symbol_table) if method_uses_genecompass(method) else None
    model = Cpa(np.asarray(prepared.adata.X, np.float32), obs["drug"].to_numpy(), obs["dose"].to_numpy(float),
                {k: obs[k].to_numpy() for k in prepared.covariates}, settings, vectors, control_label=CONTROL)
    split = obs["split"].to_numpy()
    info = {"history": model.fit(np.flatnonzero(split == "train"), np.flatnonzero(split == "val")),
            "settings": model.settings_dict()}
    if vectors is not None:
        info["genes_without_genecompass_vector"] = int(vectors[1].sum())
    means, variances, curves, cache = [], [], [], {}
    for _, row in conditions.iterrows():
        cov_values = {k: row[k] for k in prepared.covariates}
        key = tuple(cov_values.values())
        if key not in cache:
            cache[key] = prepared.controls(cov_values)
        mean, variance = model.predict(cache[key], row["drug"], float(row["dose"]), cov_values)
        means.append(mean)
        variances.append(variance)
    for _, row in conditions.drop_duplicates([*prepared.covariates, "drug"]).iterrows():
        cov_values = {k: row[k] for k in prepared.covariates}
        values = model.dose_response(cache[tuple(cov_values.values())], row["drug"], grid, cov_values)
        curves += _curve_rows(prepared, cov_values, row["drug"], grid, values)
    info["dose_curves"] = {d: model.dose_curve(d, grid).tolist() for d in sorted(conditions["drug"].unique())}
    info["dose_grid"] = grid.tolist()
    return np.vstack(means), np.vstack(variances), pd.DataFrame(curves), info


# ---------------------------------------------------------------- evaluation


def _r2(truth: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn.metrics import r2_score

    return float(r2_score(truth, predicted)) if len(truth) > 1 else float("nan")


def evaluate(prepared: Prepared, predictions: dict[str, ad.AnnData]) -> pd.DataFrame:
    """Per method, split and condition: CPA's R² of the mean and the variance over all genes and
    over the condition's DE genes. Variance R² needs two samples or more (NaN otherwise)."""
    obs = prepared.adata.obs
    X = np.asarray(prepared.adata.X)
    genes = prepared.adata.var_names
    rows = []
    for split in SPLITS:
        mask = (obs["split"] == split).to_numpy() & ~obs["control"].to_numpy()
        for condition, cells in obs[mask].groupby("condition", observed=True):
            values = X[obs.index.get_indexer(cells.index)]
            truth_mean, truth_var = values.mean(0), values.var(0)
            de = genes.get_indexer(prepared.de_genes.get(condition, []))
            first = cells.iloc[0]
            for method, predicted in predictions.items():
                mean = predicted[condition].X[0]
                var = predicted[condition].layers["variance"][0]
                enough = len(cells) > 1
                rows.append({"method": method, "split": split, "condition": condition,
                             **{k: first[k] for k in prepared.covariates}, "drug": first["drug"],
                             "dose": float(first["dose"]), "n_samples": len(cells),
                             "r2_mean": _r2(truth_mean, mean), "r2_mean_de": _r2(truth_mean[de], mean[de]),
                             "r2_var": _r2(truth_var, var) if enough else np.nan,
                             "r2_var_de": _r2(truth_var[de], var[de]) if enough else np.nan})
    return pd.DataFrame(rows)


def aggregate(per_condition: pd.DataFrame) -> pd.DataFrame:
    metrics = ["r2_mean", "r2_mean_de", "r2_var", "r2_var_de"]
    table = per_condition.groupby(["method", "split"])[metrics].mean()
    table["n_conditions"] = per_condition.groupby(["method", "split"]).size()
    return table.reset_index()


def curve_shape_scores(curves: dict[str, pd.DataFrame], truth: pd.DataFrame, covariates: list[str],
                       min_truth_range: float = 0.2) -> pd.DataFrame:
    """R² of each predicted dose-response curve against the noise-free truth, both centred on their
    mean over the dose grid: 1 is the right shape, 0 a flat line, negative worse than flat.

    Only curves whose truth moves by ``min_truth_range`` or more are scored: on a flat truth
    the score measures noise, not shape."""
    rows = []
    truth_long = truth.reset_index().melt(id_vars=[*covariates, "drug", "dose"], var_name="gene", value_name="truth")
    for method, table in curves.items():
        merged = table.merge(truth_long, on=[*covariates, "drug", "dose", "gene"], how="inner")
        for keys, group in merged.groupby([*covariates, "drug", "gene"]):
            t = group["truth"].to_numpy() - group["truth"].mean()
            p = group["predicted"].to_numpy() - group["predicted"].mean()
            if np.ptp(group["truth"]) < min_truth_range:
                continue
            score = 1 - float(((t - p) ** 2).sum()) / float((t ** 2).sum())
            rows.append({"method": method, **dict(zip([*covariates, "drug", "gene"], keys)),
                         "n_doses": len(group), "truth_range": float(np.ptp(group["truth"])), "shape_r2": score})
    return pd.DataFrame(rows)


def plot_dose_response(prepared: Prepared, curves: dict[str, pd.DataFrame], truth: pd.DataFrame | None, path) -> None:
    """One panel per drug (first covariate level): each method's curve of the drug's top gene, the
    observed condition means (OOD doses hollow) and, on the demo, the noise-free truth."""
    from genecompass.plotting import plt, save_figure

    obs, X = prepared.adata.obs, np.asarray(prepared.adata.X)
    genes = prepared.adata.var_names
    first_cov = {k: sorted(obs[k].unique())[0] for k in prepared.covariates}
    drugs = sorted(obs.loc[~obs["control"], "drug"].unique())[:12]
    n_cols = min(4, len(drugs))
    n_rows = int(np.ceil(len(drugs) / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.6 * n_cols, 3.0 * n_rows), squeeze=False)
    for ax, drug in zip(axes.ravel(), drugs):
        key = "|".join([*first_cov.values(), drug])
        gene = (prepared.curve_genes.get(key) or [genes[0]])[0]
        symbol = prepared.adata.var.loc[gene, "gene_symbol"]
        for method, table in curves.items():
            sel = table[(table["drug"] == drug) & (table["gene"] == gene)]
            for k, v in first_cov.items():
                sel = sel[sel[k] == v]
            ax.plot(sel["dose"], sel["predicted"], label=method)
        if truth is not None:
            sel = truth.reset_index()
            sel = sel[(sel["drug"] == drug) & np.logical_and.reduce([sel[k] == v for k, v in first_cov.items()])]
            if gene in sel.columns and len(sel):
                ax.plot(sel["dose"], sel[gene], "k--", label="truth (noise-free)")
        cells = obs[(obs["drug"] == drug) & np.logical_and.reduce([obs[k] == v for k, v in first_cov.items()])]
        for (dose, split), group in cells.groupby(["dose", "split"]):
            value = X[obs.index.get_indexer(group.index), genes.get_loc(gene)].mean()
            ax.scatter([dose], [value], s=25, facecolors="none" if split == "ood" else "grey", edgecolors="k",
                       zorder=3)
        ax.set_xscale("log")
        ax.set_title(f"{drug[:18]}: {symbol}", fontsize=9)
        ax.set_xlabel("dose")
    for ax in axes.ravel()[len(drugs):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("expression")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(f"Dose response ({', '.join(first_cov.values())}); dots: observed means, hollow: OOD doses",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
