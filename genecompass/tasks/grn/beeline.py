"""BEELINE-format files and BEELINE-style evaluation of TF→gene rankings.

Files (Pratapa et al. 2020, the benchmark DeepSEM and GeneCompass use):

- ``ExpressionData.csv``: genes × cells, first column the gene names (empty
  header), log-transformed expression; ``.csv.gz`` is read and written too.
- ``<name>-network.csv``: ground-truth edges, columns ``Gene1`` (regulator)
  and ``Gene2`` (target); further columns (e.g. ``Score``) are kept.
- TF list (``mouse-tfs.csv``, ``human-tfs.csv``): a ``TF`` column, here with
  a ``Sources`` column beside it.
- ``rankedEdges.csv``: a method's output, tab-separated ``Gene1 Gene2
  EdgeWeight``; in this package an edge table is ``source, target, score``.

Evaluation (:func:`evaluate_edges`) scores a ranking over the candidate
TF→gene pairs: sources are the TFs present in the expression data, targets
every gene of the expression data, self-edges excluded. Ground-truth edges
outside that set are dropped and counted. Candidate pairs a method did not
score rank below every scored pair, tied (BEELINE gives them weight 0).

- ``auprc``: area under the precision-recall curve as average precision,
  ``sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds; tied
  scores form one threshold, so the value does not depend on row order.
  (BEELINE reports PRROC's Davis-Goadrich interpolation, which agrees
  exactly when there are no ties and differs slightly inside tied blocks.)
- ``density``: true edges / candidate pairs (the AUPRC of a random ranking).
- ``auprc_ratio``: ``auprc / density`` (DeepSEM's and BEELINE's ratio).
- ``early_precision``: precision among the top-k scored pairs with k the
  number of true edges; every pair tied with the k-th score is included,
  so the set can hold more than k pairs (BEELINE's ``>=`` rule); pairs the
  method did not score, and zero scores of a non-negative ranking, are never
  part of it (BEELINE drops zero weights there).
- ``epr``: ``early_precision / density`` (BEELINE's early precision ratio).
- ``auroc``: ROC-AUC; ties count one half (Mann-Whitney).

Scores are ranked as given (higher = more confident): methods here emit
non-negative confidences (|W|, |r|, importances). Pass ``absolute=True`` for
a signed table such as another tool's ``EdgeWeight`` (BEELINE takes |w|).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from genecompass.errors import InputError
from genecompass.utils import atomic_output

EXPRESSION_FILE = "ExpressionData.csv"
EDGE_COLUMNS = ["source", "target", "score"]
CANDIDATE_MODES = ("expression", "ground_truth")


# ---------------------------------------------------------------------------
# Reading and writing
# ---------------------------------------------------------------------------


def read_expression(path) -> pd.DataFrame:
    """``ExpressionData.csv(.gz)`` as a float64 DataFrame: genes (index) × cells (columns)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file", "does not exist", "give the path of a BEELINE ExpressionData.csv(.gz)")
    try:
        frame = pd.read_csv(path, index_col=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputError(path, "file", f"not a readable CSV table ({error})",
                         "write genes as rows, cells as columns, gene names in the first column") from error
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InputError(path, "shape", f"holds {frame.shape[0]} genes × {frame.shape[1]} cells",
                         "write at least one gene row and one cell column")
    genes = frame.index
    if genes.isna().any() or (genes.astype(str).str.strip() == "").any():
        raise InputError(path, "gene name", "a row has no gene name in the first column",
                         "put a gene name at the start of every row")
    duplicated = genes[genes.duplicated()].unique()
    if len(duplicated):
        raise InputError(path, "gene name", f"{len(duplicated)} genes appear twice, e.g. '{duplicated[0]}'",
                         "keep one row per gene (sum or drop duplicates)")
    for cell in frame.columns:
        column = frame[cell]
        if not pd.api.types.is_numeric_dtype(column):
            bad = column[pd.to_numeric(column, errors="coerce").isna() & column.notna()]
            raise InputError(path, f"cell '{cell}'", f"non-numeric value '{bad.iloc[0]}' for gene '{bad.index[0]}'",
                             "write only numbers in the expression columns")
    values = frame.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        row, col = np.argwhere(~np.isfinite(values))[0]
        raise InputError(path, f"cell '{frame.columns[col]}'", f"missing or infinite value for gene '{genes[row]}'",
                         "fill missing expression with 0 (or drop the gene)")
    out = pd.DataFrame(values, index=genes.astype(str), columns=frame.columns.astype(str))
    out.index.name = None
    return out


def write_expression(expression: pd.DataFrame, path) -> None:
    """Write genes × cells as ``ExpressionData.csv`` (gzipped when ``path`` ends in ``.gz``)."""
    _check_expression(expression)
    with atomic_output(path) as tmp:
        expression.to_csv(tmp, index_label="")


def read_network(path) -> pd.DataFrame:
    """A ground-truth network CSV: ``Gene1, Gene2`` (+ any extra columns), as strings.

    Rows are kept as written (duplicates and self-edges are handled, and
    counted, by :func:`evaluate_edges`).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file", "does not exist", "give the path of a BEELINE <name>-network.csv")
    try:
        frame = pd.read_csv(path, dtype={"Gene1": str, "Gene2": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputError(path, "file", f"not a readable CSV table ({error})",
                         "write a header 'Gene1,Gene2' and one regulator,target pair per line") from error
    for column in ("Gene1", "Gene2"):
        if column not in frame.columns:
            raise InputError(path, column, f"column missing (columns: {list(frame.columns)})",
                             "name the regulator column 'Gene1' and the target column 'Gene2'")
        empty = frame[column].isna() | (frame[column].astype(str).str.strip() == "")
        if empty.any():
            raise InputError(path, column, f"empty gene name on line {int(np.flatnonzero(empty)[0]) + 2}",
                             "give both genes of every edge")
    return frame.reset_index(drop=True)


def write_network(network: pd.DataFrame, path) -> None:
    """Write ``Gene1, Gene2`` (+ extra columns); accepts a ``source, target`` edge table too."""
    frame = _as_gene_pairs(network, "network")
    with atomic_output(path) as tmp:
        frame.to_csv(tmp, index=False)


def read_tf_list(path) -> list[str]:
    """TF names from a BEELINE TF list (``TF`` column, e.g. ``mouse-tfs.csv``), unique, in file order."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file", "does not exist", "give the path of a TF list such as BEELINE's mouse-tfs.csv")
    try:
        frame = pd.read_csv(path, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputError(path, "file", f"not a readable CSV table ({error})",
                         "write a header line 'TF' and one TF name per line") from error
    if "TF" not in frame.columns:
        raise InputError(path, "TF", f"column missing (columns: {list(frame.columns)})",
                         "add a header line naming the TF column 'TF'")
    names = frame["TF"].dropna().astype(str).str.strip()
    names = names[names != ""]
    if names.empty:
        raise InputError(path, "TF", "no TF names", "list at least one TF")
    return list(dict.fromkeys(names))


def write_tf_list(tfs, path, sources=None) -> None:
    """Write a TF list in BEELINE's layout (``TF`` and, when given, ``Sources``)."""
    names = [str(tf) for tf in tfs]
    frame = pd.DataFrame({"TF": names})
    if sources is not None:
        frame["Sources"] = list(sources)
    with atomic_output(path) as tmp:
        frame.to_csv(tmp, index=False)


def read_ranked_edges(path) -> pd.DataFrame:
    """A BEELINE ``rankedEdges.csv`` (tab-separated Gene1, Gene2, EdgeWeight) as ``source, target, score``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file", "does not exist", "give the path of a rankedEdges.csv")
    frame = pd.read_csv(path, sep="\t", dtype={"Gene1": str, "Gene2": str})
    for column in ("Gene1", "Gene2", "EdgeWeight"):
        if column not in frame.columns:
            raise InputError(path, column, f"column missing (columns: {list(frame.columns)})",
                             "write a tab-separated table with columns Gene1, Gene2, EdgeWeight")
    edges = frame.rename(columns={"Gene1": "source", "Gene2": "target", "EdgeWeight": "score"})
    return check_edges(edges[EDGE_COLUMNS], path)


def write_ranked_edges(edges: pd.DataFrame, path) -> None:
    """Write an edge table as BEELINE's ``rankedEdges.csv`` (tab-separated, ranked)."""
    ranked = rank_edges(check_edges(edges))
    out = ranked.rename(columns={"source": "Gene1", "target": "Gene2", "score": "EdgeWeight"})
    with atomic_output(path) as tmp:
        out.to_csv(tmp, sep="\t", index=False)


def write_beeline_dataset(folder, expression: pd.DataFrame, networks: dict[str, pd.DataFrame],
                          tfs=None, compress: bool = False, tf_file: str = "TFs.csv") -> Path:
    """One BEELINE dataset folder: ``ExpressionData.csv``, ``<name>-network.csv`` per network, TF list.

    The folder appears complete or not at all.
    """
    _check_expression(expression)
    folder = Path(folder)
    with atomic_output(folder) as tmp:
        tmp.mkdir(parents=True)
        suffix = ".gz" if compress else ""
        expression.to_csv(tmp / f"{EXPRESSION_FILE}{suffix}", index_label="")
        for name, network in networks.items():
            _as_gene_pairs(network, f"networks['{name}']").to_csv(tmp / f"{name}-network.csv", index=False)
        if tfs is not None:
            pd.DataFrame({"TF": [str(tf) for tf in tfs]}).to_csv(tmp / tf_file, index=False)
    return folder


def find_expression_file(folder) -> Path:
    """``ExpressionData.csv`` or ``ExpressionData.csv.gz`` inside a BEELINE dataset folder."""
    folder = Path(folder)
    for name in (EXPRESSION_FILE, f"{EXPRESSION_FILE}.gz"):
        if (folder / name).is_file():
            return folder / name
    raise InputError(folder, EXPRESSION_FILE, "no expression file in this folder",
                     f"put {EXPRESSION_FILE} (or {EXPRESSION_FILE}.gz) in the dataset folder")


# ---------------------------------------------------------------------------
# Edge tables
# ---------------------------------------------------------------------------


def check_edges(edges: pd.DataFrame, path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Validate an edge table (``source, target, score``); returns it with clean dtypes."""
    missing = [column for column in EDGE_COLUMNS if column not in edges.columns]
    if missing:
        raise InputError(path, missing[0], f"column missing (columns: {list(edges.columns)})",
                         "give an edge table with columns source, target, score")
    out = pd.DataFrame({"source": edges["source"].astype(str).to_numpy(),
                        "target": edges["target"].astype(str).to_numpy(),
                        "score": pd.to_numeric(edges["score"], errors="coerce").to_numpy(dtype=np.float64)})
    if not np.isfinite(out["score"].to_numpy()).all():
        row = int(np.flatnonzero(~np.isfinite(out["score"].to_numpy()))[0])
        raise InputError(path, "score", f"missing or non-finite score for {out.source[row]}→{out.target[row]}",
                         "give every edge a finite numeric score (leave unscored edges out)")
    return out


def rank_edges(edges: pd.DataFrame) -> pd.DataFrame:
    """Sort by score, highest first; ties by source then target name, so the order is reproducible."""
    order = np.lexsort((edges["target"].to_numpy(dtype=str), edges["source"].to_numpy(dtype=str),
                        -edges["score"].to_numpy(dtype=np.float64)))
    return edges.iloc[order].reset_index(drop=True)


def candidate_pairs(genes, tfs) -> pd.DataFrame:
    """Every TF→gene pair: sources = TFs among ``genes`` (in ``genes`` order), targets = ``genes``, no self-edges."""
    genes = [str(gene) for gene in genes]
    tf_set = {str(tf) for tf in tfs}
    sources = [gene for gene in genes if gene in tf_set]
    src = np.repeat(np.asarray(sources, dtype=object), len(genes))
    tgt = np.tile(np.asarray(genes, dtype=object), len(sources))
    keep = src != tgt
    return pd.DataFrame({"source": src[keep], "target": tgt[keep]})


def edges_from_matrix(scores: np.ndarray, genes, tfs, absolute: bool = True) -> pd.DataFrame:
    """Ranked TF→gene edge table from a genes × genes matrix with ``scores[source, target]``."""
    genes = [str(gene) for gene in genes]
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(genes), len(genes)):
        raise ValueError(f"score matrix of shape {scores.shape} does not match {len(genes)} genes")
    tf_set = {str(tf) for tf in tfs}
    rows = np.array([i for i, gene in enumerate(genes) if gene in tf_set], dtype=np.int64)
    block = np.abs(scores[rows]) if absolute else scores[rows]
    src = np.repeat(rows, len(genes))
    tgt = np.tile(np.arange(len(genes)), len(rows))
    keep = src != tgt
    names = np.asarray(genes, dtype=object)
    edges = pd.DataFrame({"source": names[src[keep]], "target": names[tgt[keep]], "score": block.ravel()[keep]})
    return rank_edges(edges)


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------


def evaluate_edges(edges: pd.DataFrame, network: pd.DataFrame, genes, tfs=None, candidates: str = "expression",
                   absolute: bool = False) -> dict:
    """BEELINE-style scores of a TF→gene ranking against a ground-truth network.

    ``genes``: the genes of the expression data. ``tfs``: the TF list
    (needed for ``candidates="expression"``). ``candidates="expression"``
    (default): sources are the TFs among ``genes``, targets all ``genes``.
    ``candidates="ground_truth"``: BEELINE's and DeepSEM's own convention,
    sources are the network's regulators and targets the network's genes,
    both restricted to ``genes``. Self-edges are never candidates.

    Returns the metrics described in the module docstring and the counts:
    ``n_candidates``, ``n_sources``, ``n_targets``, ``n_true`` (distinct true
    edges in the candidate set), ``n_truth_rows``, ``n_truth_duplicates``,
    ``n_truth_self``, ``n_truth_dropped`` (distinct non-self truth edges
    outside the candidate set), ``n_predicted`` (candidate pairs the ranking
    scored), ``n_predicted_outside`` (its edges outside the candidate set,
    ignored), ``n_predicted_duplicates`` (later copies of an edge, ignored:
    the first row counts, as in BEELINE), ``k`` and ``n_early`` (size of the
    early-precision set).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    if candidates not in CANDIDATE_MODES:
        raise InputError(None, "candidates", f"unknown candidate set '{candidates}'", f"use one of {CANDIDATE_MODES}")
    edges = check_edges(edges)
    truth = _as_gene_pairs(network, "network")[["Gene1", "Gene2"]].astype(str)
    genes = list(dict.fromkeys(str(gene) for gene in genes))

    if candidates == "expression":
        if tfs is None:
            raise InputError(None, "tfs", "no TF list given", "pass the TF list (read_tf_list) or use "
                             "candidates='ground_truth'")
        tf_set = {str(tf) for tf in tfs}
        sources = [gene for gene in genes if gene in tf_set]
        targets = genes
    else:
        regulators = set(truth["Gene1"])
        truth_genes = regulators | set(truth["Gene2"])
        sources = [gene for gene in genes if gene in regulators]
        targets = [gene for gene in genes if gene in truth_genes]
    if not sources:
        raise InputError(None, "tfs", "no TF of the list is among the expression genes",
                         "check that TF names and expression gene names use the same naming (case, symbols or IDs)")

    source_pos = {gene: i for i, gene in enumerate(sources)}
    target_pos = {gene: j for j, gene in enumerate(targets)}
    n_t = len(targets)

    def flat_index(src, tgt) -> np.ndarray:
        s = np.fromiter((source_pos.get(x, -1) for x in src), dtype=np.int64, count=len(src))
        t = np.fromiter((target_pos.get(x, -1) for x in tgt), dtype=np.int64, count=len(tgt))
        index = s * n_t + t
        index[(s < 0) | (t < 0) | (np.asarray(src, dtype=object) == np.asarray(tgt, dtype=object))] = -1
        return index

    is_candidate = np.ones(len(sources) * n_t, dtype=bool)
    for i, gene in enumerate(sources):
        if gene in target_pos:
            is_candidate[i * n_t + target_pos[gene]] = False
    n_candidates = int(is_candidate.sum())

    # Ground truth: drop self-edges and duplicates, then edges outside the candidate set.
    self_edge = truth["Gene1"] == truth["Gene2"]
    distinct = truth[~self_edge].drop_duplicates()
    truth_index = flat_index(distinct["Gene1"].to_numpy(), distinct["Gene2"].to_numpy())
    labels = np.zeros(len(is_candidate), dtype=bool)
    labels[truth_index[truth_index >= 0]] = True
    n_true = int(labels.sum())

    # Prediction: first row of each edge counts; unscored candidates rank below every scored pair.
    pred_index = flat_index(edges["source"].to_numpy(), edges["target"].to_numpy())
    inside = pred_index >= 0
    first = ~pd.Series(pred_index).duplicated().to_numpy()
    use = inside & first
    raw = edges["score"].to_numpy()
    raw = np.abs(raw) if absolute else raw
    predicted = np.zeros(len(is_candidate), dtype=bool)
    predicted[pred_index[use]] = True
    scores = np.zeros(len(is_candidate), dtype=np.float64)
    scores[pred_index[use]] = raw[use]
    floor = (scores[predicted].min() - 1.0) if predicted.any() else 0.0
    scores[~predicted] = floor

    y = labels[is_candidate]
    s = scores[is_candidate]
    p = predicted[is_candidate]
    density = n_true / n_candidates if n_candidates else float("nan")
    result = {
        "n_candidates": n_candidates, "n_sources": len(sources), "n_targets": n_t, "n_true": n_true,
        "n_truth_rows": len(truth), "n_truth_duplicates": len(truth) - int(self_edge.sum()) - len(distinct),
        "n_truth_self": int(self_edge.sum()), "n_truth_dropped": int(len(distinct) - n_true),
        "n_predicted": int(p.sum()), "n_predicted_outside": int((~inside).sum()),
        "n_predicted_duplicates": int((inside & ~first).sum()), "density": density,
        "candidates": candidates, "absolute": absolute,
    }
    if n_true == 0 or n_true == n_candidates:
        nan = float("nan")
        result.update(auprc=nan, auprc_ratio=nan, early_precision=nan, epr=nan, auroc=nan, k=n_true, n_early=0)
        return result
    auprc = float(average_precision_score(y, s))
    early, n_early = early_precision(y, s, p, n_true)
    result.update(
        auprc=auprc, auprc_ratio=auprc / density, early_precision=early, epr=early / density,
        auroc=float(roc_auc_score(y, s)), k=n_true, n_early=n_early,
    )
    return result


def early_precision(labels: np.ndarray, scores: np.ndarray, predicted: np.ndarray, k: int) -> tuple[float, int]:
    """Precision among scored pairs with score >= the k-th highest scored pair (ties included).

    Returns (precision, size of the set). With fewer than k scored pairs all
    of them form the set; when every score is non-negative, zero scores are
    left out (as BEELINE does). An empty set has precision 0.
    """
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=bool)
    pool = scores[predicted]
    if len(pool) == 0 or k <= 0:
        return 0.0, 0
    kth = np.sort(pool)[::-1][min(k, len(pool)) - 1]
    chosen = predicted & (scores >= kth)
    if pool.min() >= 0:
        chosen &= scores > 0
    n = int(chosen.sum())
    return (float(labels[chosen].sum() / n) if n else 0.0), n


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _check_expression(expression: pd.DataFrame) -> None:
    if not isinstance(expression, pd.DataFrame):
        raise InputError(None, "expression", f"expected a genes × cells DataFrame, got {type(expression).__name__}",
                         "index the rows by gene name and the columns by cell")
    if expression.index.duplicated().any():
        raise InputError(None, "expression.index", "duplicate gene names", "keep one row per gene")
    if not np.isfinite(expression.to_numpy(dtype=np.float64)).all():
        raise InputError(None, "expression", "missing or infinite values", "fill missing expression with 0")


def _as_gene_pairs(network: pd.DataFrame, name: str) -> pd.DataFrame:
    if {"Gene1", "Gene2"} <= set(network.columns):
        return network.reset_index(drop=True)
    if {"source", "target"} <= set(network.columns):
        renamed = network.rename(columns={"source": "Gene1", "target": "Gene2"})
        return renamed[["Gene1", "Gene2"] + [c for c in renamed.columns if c not in ("Gene1", "Gene2")]]
    raise InputError(None, name, f"needs columns Gene1, Gene2 (or source, target); has {list(network.columns)}",
                     "name the regulator column 'Gene1' and the target column 'Gene2'")
