"""The GRN-inference task: dataset export, one method's ranking, the prior sweep, the table.

A GRN dataset is BEELINE-shaped (:mod:`genecompass.tasks.grn.beeline`): log
expression (genes × cells), a TF list and one or more ground-truth networks.
Real BEELINE datasets are read as published; a dataset of the project's own
QC'd samples (the demo) is exported like BEELINE's: log1p of counts per
10,000, the TFs that are expressed plus the most variable other genes.

Methods (names used by the rules):

- ``random``, ``pearson``, ``spearman``, ``genie3``: the honest baselines
  (:mod:`genecompass.tasks.grn.baselines`);
- ``deepsem``: vanilla DeepSEM (:mod:`genecompass.tasks.grn.deepsem`);
- ``cosine_<variant>``: the cosine of two genes' GeneCompass embeddings
  alone, no expression data;
- ``deepsem_prior_<variant>``: DeepSEM's ranking filtered by the binarised
  embedding cosine (:func:`genecompass.tasks.grn.prior.combine_with_prior`) at
  the configured threshold (paper 0.4); :func:`prior_sweep` scores every
  threshold of a grid so the choice can be checked.

``<variant>`` is a pretrained model variant or ``untrained`` (the same
architecture at its initial weights: the "without pre-training" control).
Gene names are matched to embeddings by upper-cased symbol.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from genecompass.errors import InputError
from genecompass.tasks.grn.baselines import (
    correlation_scores,
    embedding_cosine_scores,
    genie3_scores,
    random_scores,
)
from genecompass.tasks.grn.beeline import evaluate_edges, read_network
from genecompass.tasks.grn.methods import BASE_METHODS, method_variant
from genecompass.tasks.grn.prior import combine_with_prior, embedding_prior

METRIC_COLUMNS = ("auprc", "auprc_ratio", "epr", "auroc", "early_precision", "density", "n_true", "n_candidates")


def read_truth_network(path) -> pd.DataFrame:
    """Ground-truth edges as ``Gene1, Gene2`` (upper-cased): a BEELINE CSV or a ``source, target`` table."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file", "does not exist", "give a ground-truth network (Gene1,Gene2 CSV)")
    sep = "\t" if path.name.removesuffix(".gz").endswith((".tsv", ".txt")) else ","
    header = pd.read_csv(path, sep=sep, nrows=0).columns
    if {"Gene1", "Gene2"} <= set(header):
        network = read_network(path)
    elif {"source", "target"} <= set(header):
        network = pd.read_csv(path, sep=sep, dtype=str).rename(columns={"source": "Gene1", "target": "Gene2"})
    else:
        raise InputError(path, "columns", f"neither Gene1/Gene2 nor source/target (has {list(header)})",
                         "name the regulator and target columns Gene1 and Gene2 (BEELINE) or source and target")
    network = network[["Gene1", "Gene2"]].dropna().astype(str)
    return network.apply(lambda column: column.str.upper()).drop_duplicates().reset_index(drop=True)


def read_tfs(path, column: str = "TF") -> list[str]:
    """TF names (upper-cased, unique) from a column of a CSV/TSV TF list (BEELINE: ``TF``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file", "does not exist", "give a TF list such as BEELINE's mouse-tfs.csv")
    sep = "\t" if path.name.removesuffix(".gz").endswith((".tsv", ".txt")) else ","
    frame = pd.read_csv(path, sep=sep, dtype=str)
    if column not in frame.columns:
        raise InputError(path, column, f"column missing (columns: {list(frame.columns)})",
                         "set the dataset's tf_column to the column holding TF names")
    names = frame[column].dropna().str.strip().str.upper()
    return list(dict.fromkeys(names[names != ""]))


def export_expression(adata, tfs, n_variable_genes: int = 500, min_cell_fraction: float = 0.1) -> pd.DataFrame:
    """BEELINE-style expression from raw counts: log1p(counts per 10,000), genes × cells.

    Genes detected in at least ``min_cell_fraction`` of the cells are kept when
    they are TFs or among the ``n_variable_genes`` most variable other genes
    (variance of the log expression), as BEELINE keeps TFs plus the top
    500/1,000 variable genes. Gene names are upper-cased symbols
    (``adata.var["symbol"]`` when present, else ``var_names``).
    """
    from scipy import sparse

    symbols = (adata.var["symbol"] if "symbol" in adata.var else adata.var_names.to_series()).astype(str).str.upper()
    counts = adata.X.tocsr() if sparse.issparse(adata.X) else sparse.csr_matrix(adata.X)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    if (totals <= 0).any():
        raise InputError(None, "cells", f"{int((totals <= 0).sum())} cells have no counts", "drop empty cells (QC)")
    logged = counts.multiply(1e4 / totals[:, None]).tocsr().log1p()
    detected = np.asarray((counts > 0).mean(axis=0)).ravel() >= min_cell_fraction
    mean = np.asarray(logged.mean(axis=0)).ravel()
    variance = np.asarray(logged.multiply(logged).mean(axis=0)).ravel() - mean ** 2
    unique = ~symbols.duplicated().to_numpy()
    is_tf = symbols.isin({str(tf).upper() for tf in tfs}).to_numpy()
    keep = detected & unique & is_tf
    others = np.flatnonzero(detected & unique & ~is_tf)
    top = others[np.argsort(-variance[others], kind="stable")[:n_variable_genes]]
    keep[top] = True
    if not (keep & is_tf).any():
        raise InputError(None, "tfs", "no TF of the list is detected in the cells",
                         "check that the TF list uses the samples' gene symbols")
    rows = np.flatnonzero(keep)
    dense = logged[:, rows].toarray().T
    return pd.DataFrame(dense, index=symbols.to_numpy()[rows], columns=adata.obs_names.astype(str))


def read_grn_dataset(folder) -> tuple[pd.DataFrame, list[str], dict[str, pd.DataFrame]]:
    """A dataset folder written by the ``grn_dataset`` rule: (expression, TFs, networks by name)."""
    from genecompass.tasks.grn.beeline import find_expression_file, read_expression

    folder = Path(folder)
    expression = read_expression(find_expression_file(folder))
    networks = {path.name.removesuffix("-network.csv"): read_truth_network(path)
                for path in sorted(folder.glob("*-network.csv"))}
    if not networks:
        raise InputError(folder, "networks", "no <name>-network.csv in the dataset folder",
                         "re-run the grn_dataset rule")
    return expression, read_tfs(folder / "TFs.csv"), networks


def baseline_edges(method: str, expression: pd.DataFrame, tfs, seed: int = 0, genie3_trees: int = 100,
                   n_jobs: int = 1) -> pd.DataFrame:
    """The ranked edges of a baseline method (not DeepSEM, not an embedding method)."""
    genes = expression.index
    if method == "random":
        return random_scores(genes, tfs, seed=seed)
    if method in ("pearson", "spearman"):
        return correlation_scores(expression, tfs, method=method)
    if method == "genie3":
        return genie3_scores(expression, tfs, n_trees=genie3_trees, seed=seed, n_jobs=n_jobs)
    raise InputError(None, "method", f"'{method}' is not a baseline", f"use one of {BASE_METHODS[:4]}")


def embedding_edges(vectors: pd.DataFrame, expression: pd.DataFrame, tfs) -> pd.DataFrame:
    """``cosine_<variant>``: embedding cosine of every candidate TF→gene pair with both vectors."""
    return embedding_cosine_scores(vectors, expression.index, tfs)


def prior_edges(deepsem: pd.DataFrame, vectors: pd.DataFrame, genes, threshold: float) -> pd.DataFrame:
    """``deepsem_prior_<variant>``: DeepSEM's edges kept where the embedding cosine exceeds ``threshold``."""
    return combine_with_prior(deepsem, embedding_prior(vectors, genes, threshold))


def method_edges(method: str, expression: pd.DataFrame, tfs, *, seed: int = 0, settings: dict | None = None,
                 vectors: pd.DataFrame | None = None, deepsem: pd.DataFrame | None = None,
                 n_jobs: int = 1) -> pd.DataFrame:
    """The ranked edges of any method of the task (see the module docstring).

    ``settings``: the ``tasks.grn`` config section (``deepsem``, ``device``,
    ``prior_threshold``, ``genie3_trees``); ``vectors``: the variant's gene
    vectors for embedding methods; ``deepsem``: DeepSEM's edges for the prior.
    """
    from genecompass.tasks.grn.deepsem import train_deepsem

    settings = settings or {}
    if method_variant(method) and vectors is None:
        raise InputError(None, "vectors", f"method '{method}' needs gene embeddings", "pass the variant's vectors")
    if method == "deepsem":
        result = train_deepsem(expression, settings.get("deepsem"), seed=seed, device=settings.get("device", "cpu"))
        return result.edges(tfs)
    if method.startswith("cosine_"):
        return embedding_edges(vectors, expression, tfs)
    if method.startswith("deepsem_prior_"):
        if deepsem is None:
            raise InputError(None, "deepsem", f"method '{method}' filters DeepSEM's edges", "pass them")
        return prior_edges(deepsem, vectors, expression.index, float(settings.get("prior_threshold", 0.4)))
    return baseline_edges(method, expression, tfs, seed=seed, genie3_trees=int(settings.get("genie3_trees", 100)),
                          n_jobs=n_jobs)


def evaluate_networks(edges: pd.DataFrame, networks: dict[str, pd.DataFrame], genes, tfs) -> pd.DataFrame:
    """One row per ground-truth network: AUPRC, AUPRC ratio, EPR, AUROC and the counts behind them."""
    rows = []
    for name, network in networks.items():
        scores = evaluate_edges(edges, network, genes, tfs)
        rows.append({"network": name, **{key: scores[key] for key in METRIC_COLUMNS}})
    return pd.DataFrame(rows)


def prior_sweep(deepsem: pd.DataFrame, vectors: pd.DataFrame, networks: dict[str, pd.DataFrame], genes, tfs,
                thresholds) -> pd.DataFrame:
    """DeepSEM + binarised-cosine prior scored at every threshold (paper: 0 to 1, 0.4 chosen).

    Also reports the share of DeepSEM's edges each threshold keeps.
    """
    frames = []
    for threshold in thresholds:
        edges = prior_edges(deepsem, vectors, genes, float(threshold))
        table = evaluate_networks(edges, networks, genes, tfs)
        table.insert(0, "threshold", float(threshold))
        table["kept_fraction"] = len(edges) / max(len(deepsem), 1)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


UGRN_EXTRACTORS = ("embedding", "vvp", "gdt")


def symbol_tokens(dictionary: pd.DataFrame, species: str) -> dict[str, int]:
    """Upper-cased symbol → token id of one species' genes (a symbol on several tokens keeps the first)."""
    genes = dictionary[(dictionary["token_class"] != "special") & (dictionary[f"{species}_symbol"] != "")]
    symbols = genes[f"{species}_symbol"].astype(str).str.upper()
    keep = ~symbols.duplicated() & ~genes["token_id"].duplicated()
    return dict(zip(symbols[keep], genes.loc[keep, "token_id"].astype(int), strict=True))


def ugrn_pairs(expression: pd.DataFrame, network: pd.DataFrame, tfs, tokens: dict[str, int],
               max_positive: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Balanced labelled TF→gene pairs of one dataset (genes with a token), positives capped at ``max_positive``."""
    from genecompass.tasks.grn.ugrn import sample_training_pairs

    gene_tokens = {gene: tokens[gene] for gene in expression.index if gene in tokens}
    pairs = sample_training_pairs(network, gene_tokens, tfs=[tf for tf in tfs if tf in gene_tokens], seed=seed)
    if max_positive is not None:
        rng = np.random.default_rng(seed)
        kept = []
        for label in (1, 0):
            rows = np.flatnonzero(pairs["label"].to_numpy() == label)
            kept.append(np.sort(rng.choice(rows, size=min(len(rows), int(max_positive)), replace=False)))
        pairs = pairs.iloc[np.concatenate(kept)].reset_index(drop=True)
    return pairs


def ugrn_features(model, pairs: pd.DataFrame, genes, species: str, extractor: str,
                  window: int | None = None) -> np.ndarray:
    """One extractor's pair features, both directions concatenated (the paper's ``[e_ij; e_ji]``)."""
    from genecompass.tasks.grn.ugrn import (
        embedding_pair_features,
        gradient_trajectory,
        virtual_value_perturbation,
    )

    token_pairs = pairs[["source_token", "target_token"]].to_numpy(np.int64)
    genes = np.asarray(sorted(set(int(g) for g in genes)), dtype=np.int64)
    if extractor == "embedding":
        return embedding_pair_features(model, genes, token_pairs, species=species, combine="concat")
    if extractor == "vvp":
        return virtual_value_perturbation(model, genes, token_pairs, species=species, window=window,
                                          both_directions=True)
    if extractor == "gdt":
        return gradient_trajectory(model, genes, token_pairs, species=species, window=window, both_directions=True)
    raise InputError(None, "extractor", f"unknown '{extractor}'", f"use one of {UGRN_EXTRACTORS}")


def ugrn_table(model, datasets: dict[str, dict], kind: str = "logistic", seed: int = 0,
               window: int | None = None) -> pd.DataFrame:
    """Leave-one-dataset-out AUPRC/AUROC of every extractor and the VVP + GDT ensemble.

    ``datasets``: name → ``{"pairs": ugrn_pairs(...), "genes": token ids of the
    dataset's genes, "species": ...}``. A translator is trained on each
    dataset's labelled pairs and scores every other dataset's.
    """
    from genecompass.tasks.grn.ugrn import ensemble_logits, leave_one_dataset_out, translator_scores

    frames, logits = [], {}
    for extractor in UGRN_EXTRACTORS:
        features = {name: (ugrn_features(model, d["pairs"], d["genes"], d["species"], extractor, window),
                           d["pairs"]["label"].to_numpy()) for name, d in datasets.items()}
        table, logits[extractor] = leave_one_dataset_out(features, kind=kind, seed=seed, return_logits=True)
        table.insert(0, "extractor", extractor)
        frames.append(table)
    rows = []
    for (train, test), vvp in logits["vvp"].items():
        labels = datasets[test]["pairs"]["label"].to_numpy()
        scores = ensemble_logits(vvp, logits["gdt"][(train, test)])
        rows.append({"extractor": "vvp+gdt", "train_dataset": train, "test_dataset": test,
                     **translator_scores(labels, scores)})
    frames.append(pd.DataFrame(rows))
    table = pd.concat(frames, ignore_index=True)
    table["auprc_ratio"] = table["auprc"] / (table["n_positive"] / table["n_pairs"])
    return table


def deletion_table(encoder, cells, tfs, network: pd.DataFrame, tokens: dict[str, int], *, max_length: int,
                   k_values=(10, 20, 50), min_targets: int = 5, max_cells: int = 200, n_random: int = 200,
                   seed: int = 0) -> pd.DataFrame:
    """In-silico deletion of every TF with enough known targets: precision@k of the most shifted genes.

    ``cells``: tokenized cells (``input_ids``, ``values``, ``length``,
    ``species``) of one species; per TF, up to ``max_cells`` cells whose first
    ``max_length`` genes include it are read, the TF deleted, and genes
    ranked by the shift of their contextual embeddings
    (:func:`genecompass.tasks.grn.deletion.deletion_shift`) against the TF's targets
    in ``network``. One row per TF and k, with random-pick precision beside.
    """
    from genecompass.corpus import rows_holding
    from genecompass.tasks.grn.deletion import deletion_precision, deletion_shift_in_cells

    held = rows_holding(cells, [tokens[tf] for tf in tfs if tf in tokens], max_length)
    frames = []
    for tf in tfs:
        targets = {tokens[g] for g in network.loc[network["Gene1"] == tf, "Gene2"] if g in tokens and g != tf}
        if tf not in tokens or len(targets) < min_targets:
            continue
        token = tokens[tf]
        if len(held[token]) == 0:
            continue
        rows, shifts = deletion_shift_in_cells(encoder, cells, token, held[token], max_length=max_length,
                                               max_cells=max_cells, seed=seed)
        table = deletion_precision(shifts, sorted(targets), k_values=k_values, n_random=n_random, seed=seed)
        table.insert(0, "tf", tf)
        table.insert(1, "n_cells", len(rows))
        frames.append(table)
    if not frames:
        raise InputError(None, "tfs", f"no TF has {min_targets}+ known targets with tokens and cells",
                         "lower min_targets or check that the network's genes match the cells'")
    return pd.concat(frames, ignore_index=True)


def plot_prior_sweep(sweep: pd.DataFrame, path, chosen: float | None = None, title: str = "") -> None:
    """AUPRC ratio and EPR against the threshold, one line per network."""
    from genecompass.plotting import plt, save_figure


    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for axis, metric, label in ((axes[0], "auprc_ratio", "AUPRC ratio"), (axes[1], "epr", "EPR")):
        for network, rows in sweep.groupby("network", sort=False):
            axis.plot(rows["threshold"], rows[metric], marker="o", ms=3, label=network)
        axis.axhline(1.0, color="grey", lw=0.8, ls=":")
        if chosen is not None:
            axis.axvline(chosen, color="black", lw=0.8, ls="--")
        axis.set_xlabel("cosine threshold")
        axis.set_ylabel(label)
    axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def plot_method_table(table: pd.DataFrame, path, title: str = "") -> None:
    """AUPRC ratio and EPR of every method, grouped by network (1 = random expectation)."""
    from genecompass.plotting import plt, save_figure


    networks = list(dict.fromkeys(table["network"]))
    methods = list(dict.fromkeys(table["method"]))
    width = 0.8 / max(len(methods), 1)
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(networks) * 2), 3.6))
    for axis, metric, label in ((axes[0], "auprc_ratio", "AUPRC ratio"), (axes[1], "epr", "EPR")):
        for i, method in enumerate(methods):
            rows = table[table["method"] == method].set_index("network").reindex(networks)
            axis.bar(np.arange(len(networks)) + i * width, rows[metric].to_numpy(), width, label=method)
        axis.axhline(1.0, color="grey", lw=0.8, ls=":")
        axis.set_xticks(np.arange(len(networks)) + 0.4 - width / 2, networks, fontsize=8)
        axis.set_ylabel(label)
    axes[1].legend(fontsize=6, ncol=2)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


__all__ = ["UGRN_EXTRACTORS", "deletion_table", "symbol_tokens", "ugrn_features", "ugrn_pairs", "ugrn_table",
           "baseline_edges", "embedding_edges", "evaluate_networks", "export_expression", "method_edges",
           "read_grn_dataset",
           "plot_method_table", "plot_prior_sweep", "prior_edges", "prior_sweep", "read_tfs",
           "read_truth_network"]
