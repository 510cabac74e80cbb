"""The perturbation task end to end: prepare a dataset, run one method, evaluate them all."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import pandas as pd

from genecompass.embedding_files import genecompass_vectors
from genecompass.tasks.perturbation import baselines, data, metrics
from genecompass.tasks.perturbation.methods import GEARS_METHODS, METHODS, method_uses_genecompass

logger = logging.getLogger(__name__)



@dataclass
class Prepared:
    adata: ad.AnnData              # selected genes, conditions whose genes all have GO terms
    split: data.Split
    de_genes: dict[str, list[str]]
    profiles: pd.DataFrame         # pseudo-bulk truth, conditions x genes


def prepare(h5ad, gene_terms: dict[str, set[str]], n_top_genes: int | None, n_de_genes: int, seed: int,
            split_settings: dict | None = None) -> tuple[Prepared, dict]:
    """Load, keep the conditions GEARS can embed, select genes, split, rank DE genes."""
    adata = data.load_perturb_dataset(h5ad)
    conditions = adata.obs["condition"].astype(str)
    unknown = sorted({c for c in conditions.unique()
                      if any(g.upper() not in gene_terms for g in data.condition_genes(c))})
    if unknown:
        # GEARS drops these too: a gene without GO terms has no place in the perturbation graph.
        logger.warning("%d conditions have a gene without GO terms and are dropped: %s", len(unknown), unknown[:10])
    adata = adata[~conditions.isin(unknown).to_numpy()].copy()
    adata.obs["condition"] = adata.obs["condition"].astype(str)
    adata = data.select_genes(adata, n_top_genes)
    split = data.simulation_split(sorted(adata.obs["condition"].unique()), seed, **(split_settings or {}))
    prepared = Prepared(adata, split, data.top_de_genes(adata, n_de_genes), data.pseudobulk(adata))
    report = {"n_cells": int(adata.n_obs), "n_genes": int(adata.n_vars), "dropped_conditions": unknown,
              "n_conditions": {part: len(split.conditions(part)) for part in ("train", "val", "test")},
              "test_subgroups":
                  pd.Series([split.subgroup[c] for c in split.conditions("test")]).value_counts().to_dict(),
              "variance_all": metrics.perturbation_variance(prepared.profiles)}
    return prepared, report


def write_prepared(prepared: Prepared, outdir) -> None:
    from genecompass.utils import atomic_output, write_json

    out = Path(outdir)
    with atomic_output(out / "cells.h5ad") as tmp:
        prepared.adata.write_h5ad(tmp, compression="gzip")
    write_json(prepared.split.to_dict(), out / "split.json")
    write_json(prepared.de_genes, out / "de_genes.json")


def read_prepared(outdir) -> Prepared:
    out = Path(outdir)
    adata = ad.read_h5ad(out / "cells.h5ad")
    split = data.Split(**json.loads((out / "split.json").read_text()))
    de_genes = json.loads((out / "de_genes.json").read_text())
    return Prepared(adata, split, de_genes, data.pseudobulk(adata))


def gears_graphs(prepared: Prepared, gene_terms: dict[str, set[str]], settings) -> tuple[list[str], object, object]:
    """GEARS's perturbation genes, GO graph and co-expression graph for a prepared experiment.

    The perturbation graph holds every measured or perturbed gene with GO terms; the co-expression graph is
    built, as GEARS builds it, from the control and single-perturbation training cells only (its filter:
    "ctrl" in the condition name), not from the combinations (bench/fidelity_gears.py compares the two).
    """
    genes = list(prepared.adata.var_names)
    conditions = prepared.adata.obs["condition"]
    perturbed = sorted({g for c in conditions.unique() for g in data.condition_genes(c)})
    pert_genes = sorted({g for g in [*genes, *perturbed] if g.upper() in gene_terms})
    go = data.go_graph(pert_genes, gene_terms, settings.go_neighbours, settings.go_threshold)
    train = prepared.split.conditions("train")
    train_cells = conditions.isin([c for c in train if "ctrl" in c]).to_numpy()
    coexpress = data.coexpression_graph(data.dense(prepared.adata.X)[train_cells], settings.coexpress_neighbours,
                                        settings.coexpress_threshold)
    return pert_genes, go, coexpress


def run_method(method: str, prepared: Prepared, gene_terms: dict[str, set[str]], seed: int,
               gears_config: dict | None = None, baseline_config: dict | None = None,
               symbol_table: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict]:
    """Predictions (held-out test conditions x genes) and a record of what was run."""
    if method not in METHODS:
        raise ValueError(f"unknown perturbation method {method!r}; use one of {METHODS}")
    if method_uses_genecompass(method) and symbol_table is None:
        raise ValueError(f"{method} needs GeneCompass gene embeddings")
    split, profiles = prepared.split, prepared.profiles
    train, val, test = split.conditions("train"), split.conditions("val"), split.conditions("test")
    genes = list(prepared.adata.var_names)
    info: dict = {"method": method, "seed": seed, "n_train": len(train), "n_val": len(val), "n_test": len(test)}
    if method == "train_mean":
        return baselines.train_mean(profiles, train, test), info
    perturbed = sorted({g for c in prepared.adata.obs["condition"].unique() for g in data.condition_genes(c)})
    if method in GEARS_METHODS:
        from genecompass.tasks.perturbation.gears import Gears, GearsSettings  # torch_geometric: only GEARS needs it

        settings = GearsSettings.from_config(gears_config, seed)
        pert_genes, go, coexpress = gears_graphs(prepared, gene_terms, settings)
        X = data.dense(prepared.adata.X)
        gene_vectors = genecompass_vectors(genes, symbol_table) if method == "genecompass_gears" else None
        model = Gears(X, prepared.adata.obs["condition"].to_numpy(), genes, pert_genes, go, coexpress,
                      prepared.de_genes, settings, gene_vectors)
        info["history"] = model.fit(train, val)
        info["settings"] = model.settings_dict()
        info["go_graph_edges"] = int(go[0].shape[1])
        info["coexpression_graph_edges"] = int(coexpress[0].shape[1])
        if gene_vectors is not None:
            info["genes_without_genecompass_vector"] = int(gene_vectors[1].sum())
        return model.predict(test), info
    kind, feature = method.rsplit("_", 1)
    n_components = int((baseline_config or {}).get("n_components", 256))
    if feature == "go":
        features = data.go_membership_features(sorted(set(genes) | set(perturbed)), gene_terms, n_components, seed)
    else:
        vectors, missing = genecompass_vectors(perturbed, symbol_table)
        info["perturbed_genes_without_genecompass_vector"] = int(missing.sum())
        features = baselines.reduce_features(pd.DataFrame(vectors, index=perturbed), n_components, seed)
    predicted, tuning = baselines.regression_baseline(kind, features, profiles, train, val, test, seed)
    info["tuning"] = tuning
    return predicted, info


def evaluate_methods(prepared: Prepared, predictions: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Per-condition and aggregated metrics of every method, the GEARS comparison, and the variance."""
    frames = []
    for method, predicted in predictions.items():
        table = metrics.evaluate(predicted, prepared.profiles, prepared.de_genes, prepared.split.subgroup)
        table.insert(0, "method", method)
        frames.append(table)
    per_condition = pd.concat(frames, ignore_index=True)
    out = {"per_condition": per_condition, "metrics": metrics.aggregate(per_condition)}
    if {"gears", "genecompass_gears"} <= set(predictions):
        out["comparison"] = metrics.smaller_deviation_share(per_condition, "genecompass_gears", "gears")
    test = prepared.split.conditions("test")
    variance = {"all_conditions": metrics.perturbation_variance(prepared.profiles),
                "test_conditions": metrics.perturbation_variance(prepared.profiles.loc[["ctrl", *test]])}
    out["variance"] = pd.DataFrame(variance).T.reset_index(names="scope")
    return out
