"""Honest simple GRN baselines: each returns a ranked TF→gene edge table.

Every function takes ``expression`` as genes × cells (the BEELINE
orientation, :func:`genecompass.tasks.grn.beeline.read_expression`) and ``tfs``, and
returns ``source, target, score`` over the candidate pairs (sources = TFs
among the expression genes, targets = every gene, no self-edges), ranked by
:func:`genecompass.tasks.grn.beeline.rank_edges`.

- :func:`correlation_scores`: |Pearson r| or |Spearman rho| across cells.
- :func:`genie3_scores`: GENIE3 (Huynh-Thu et al. 2010): for each target a
  tree ensemble regresses its expression (scaled to unit variance) on the
  TFs' expression (the target itself left out); the score of TF→target is the
  TF's unnormalised impurity importance, averaged over trees, which keeps
  scores comparable across targets. Random forest with ``max_features="sqrt"``
  as GENIE3, or extra trees.
- :func:`grnboost2_scores`: arboreto's GRNBoost2, optional. arboreto 0.1.6
  (its last release) works only with dask/distributed < 2024.3: with the
  newer query-planning dask it fails with "Must supply at least one delayed
  object". Install ``arboreto`` with ``dask[distributed]<2024.3`` to use it.
- :func:`random_scores`: uniform random scores from a seed.
- :func:`embedding_cosine_scores`: cosine similarity of the two genes'
  embedding vectors, the embedding "alone" without any expression data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from genecompass.errors import InputError
from genecompass.tasks.grn.beeline import candidate_pairs, edges_from_matrix, rank_edges

CORRELATION_METHODS = ("pearson", "spearman")
TREE_METHODS = ("random_forest", "extra_trees")


def _tf_rows(expression: pd.DataFrame, tfs) -> np.ndarray:
    tf_set = {str(tf) for tf in tfs}
    rows = np.array([i for i, gene in enumerate(expression.index.astype(str)) if gene in tf_set], dtype=np.int64)
    if len(rows) == 0:
        raise InputError(None, "tfs", "no TF of the list is among the expression genes",
                         "check that TF names and expression gene names use the same naming")
    return rows


def _standardise_rows(values: np.ndarray) -> np.ndarray:
    """Centre and scale each gene (row) to unit norm; constant genes become zeros."""
    centred = values - values.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return centred / norms


def correlation_scores(expression: pd.DataFrame, tfs, method: str = "pearson") -> pd.DataFrame:
    """|correlation| between each TF and each gene across cells (constant genes score 0)."""
    from scipy.stats import rankdata

    if method not in CORRELATION_METHODS:
        raise InputError(None, "method", f"unknown correlation '{method}'", f"use one of {CORRELATION_METHODS}")
    values = expression.to_numpy(dtype=np.float64)
    if method == "spearman":
        values = rankdata(values, axis=1)  # average ranks for ties, as scipy.stats.spearmanr
    unit = _standardise_rows(values)
    rows = _tf_rows(expression, tfs)
    matrix = np.zeros((len(values), len(values)))
    matrix[rows] = np.clip(unit[rows] @ unit.T, -1.0, 1.0)
    return edges_from_matrix(matrix, expression.index, tfs, absolute=True)


def genie3_scores(expression: pd.DataFrame, tfs, n_trees: int = 1000, method: str = "random_forest",
                  max_features="sqrt", seed: int = 0, n_jobs: int = 1, progress: bool = False) -> pd.DataFrame:
    """GENIE3 importances (see the module docstring); deterministic for a given ``seed`` and ``n_jobs``."""
    from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor

    if method not in TREE_METHODS:
        raise InputError(None, "method", f"unknown tree method '{method}'", f"use one of {TREE_METHODS}")
    if n_trees < 1:
        raise InputError(None, "n_trees", f"must be at least 1, got {n_trees}", "use e.g. 1000 (GENIE3's default)")
    genes = expression.index.astype(str)
    values = expression.to_numpy(dtype=np.float64).T  # cells × genes
    rows = _tf_rows(expression, tfs)
    regressor = RandomForestRegressor if method == "random_forest" else ExtraTreesRegressor
    importance = np.zeros((len(genes), len(genes)))
    seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, size=len(genes))
    targets = range(len(genes))
    if progress:
        from tqdm import tqdm

        targets = tqdm(targets, desc="GENIE3 targets", mininterval=10)
    for target in targets:
        y = values[:, target]
        std = y.std()
        inputs = rows[rows != target]
        if std == 0 or len(inputs) == 0:
            continue
        model = regressor(n_estimators=n_trees, max_features=max_features, random_state=int(seeds[target]),
                          n_jobs=n_jobs)
        model.fit(values[:, inputs], y / std)
        per_tree = np.array([tree.tree_.compute_feature_importances(normalize=False) for tree in model.estimators_])
        importance[inputs, target] = per_tree.mean(axis=0)
    return edges_from_matrix(importance, genes, tfs, absolute=True)


def grnboost2_scores(expression: pd.DataFrame, tfs, seed: int = 0, n_workers: int = 1) -> pd.DataFrame:
    """arboreto's GRNBoost2 importances on an in-process dask cluster (optional dependency)."""
    try:
        from arboreto.algo import grnboost2
        from distributed import Client, LocalCluster
    except ImportError as error:
        raise InputError(None, "grnboost2", f"arboreto is not installed ({error})",
                         "pip install arboreto 'dask[distributed]<2024.3', or use genie3_scores") from error
    rows = _tf_rows(expression, tfs)
    genes = expression.index.astype(str)
    matrix = pd.DataFrame(expression.to_numpy(dtype=np.float64).T, columns=genes)
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=False, dashboard_address=None)
    try:
        with Client(cluster) as client:
            network = grnboost2(matrix, tf_names=list(genes[rows]), client_or_address=client, seed=seed,
                                verbose=False)
    except TypeError as error:
        if "delayed object" in str(error):
            raise InputError(None, "grnboost2", "arboreto 0.1.6 does not run on this dask (>= 2024.3)",
                             "install 'dask[distributed]<2024.3' beside arboreto, or use genie3_scores") from error
        raise
    finally:
        cluster.close()
    edges = pd.DataFrame({"source": network["TF"].astype(str), "target": network["target"].astype(str),
                          "score": network["importance"].astype(np.float64)})
    edges = edges[edges["source"] != edges["target"]]
    return rank_edges(edges.reset_index(drop=True))


def random_scores(genes, tfs, seed: int = 0) -> pd.DataFrame:
    """Uniform random scores in [0, 1) for every candidate TF→gene pair."""
    pairs = candidate_pairs(genes, tfs)
    pairs["score"] = np.random.default_rng(seed).random(len(pairs))
    return rank_edges(pairs)


def vector_frame(vectors) -> pd.DataFrame:
    """Gene embeddings as a genes × dims float DataFrame, from a DataFrame or a ``GeneVectors``."""
    if isinstance(vectors, pd.DataFrame):
        frame = vectors.astype(np.float64)
    elif hasattr(vectors, "ids") and hasattr(vectors, "vectors"):
        frame = pd.DataFrame(np.asarray(vectors.vectors, dtype=np.float64), index=list(vectors.ids))
    else:
        raise InputError(None, "vectors", f"expected a genes × dims DataFrame or GeneVectors, got "
                         f"{type(vectors).__name__}", "index the embedding table by gene name")
    frame.index = frame.index.astype(str)
    if frame.index.duplicated().any():
        raise InputError(None, "vectors", "duplicate gene names in the embedding table", "keep one vector per gene")
    if not np.isfinite(frame.to_numpy()).all():
        raise InputError(None, "vectors", "missing or infinite values in the embedding table",
                         "drop genes without a vector instead of writing NaN")
    return frame


def cosine_matrix(vectors, genes) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity among ``genes`` and a mask of the genes that have a vector.

    Rows and columns follow ``genes``; pairs with a gene without a vector are 0.
    A zero vector has cosine 0 with everything.
    """
    frame = vector_frame(vectors)
    genes = [str(gene) for gene in genes]
    has = np.array([gene in frame.index for gene in genes], dtype=bool)
    unit = np.zeros((len(genes), frame.shape[1]))
    if has.any():
        present = frame.loc[[gene for gene, ok in zip(genes, has) if ok]].to_numpy()
        norms = np.linalg.norm(present, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        unit[has] = present / norms
    return np.clip(unit @ unit.T, -1.0, 1.0), has


def embedding_cosine_scores(vectors, genes, tfs) -> pd.DataFrame:
    """Cosine of the two genes' embedding vectors for candidate TF→gene pairs where both have one.

    Pairs with a gene lacking a vector are left out (they rank last in
    :func:`genecompass.tasks.grn.beeline.evaluate_edges`). The score is the signed
    cosine: similar genes rank first.
    """
    cosine, has = cosine_matrix(vectors, genes)
    genes = [str(gene) for gene in genes]
    edges = edges_from_matrix(cosine, genes, tfs, absolute=False)
    covered = {gene for gene, ok in zip(genes, has) if ok}
    keep = edges["source"].isin(covered) & edges["target"].isin(covered)
    return edges[keep].reset_index(drop=True)
