"""Numbers that say whether a knowledge embedding carries its knowledge.

- :func:`heldout_pair_auc`: hide a fraction of the positive pairs, train on
  the rest, and ask whether the hidden pairs are more similar (cosine) than
  random gene pairs — ROC-AUC 0.5 means the embedding learned nothing that
  generalises, 1.0 that every hidden pair beats every random pair.
- :func:`pair_auc`: the same score for an already trained embedding and any
  pair list (e.g. promoter embeddings scored on gene-family pairs).

Negatives are random pairs of two different genes that both have a vector
and are not a known positive pair. ``negatives="degree"`` draws them instead
by pairing the positives' own genes at random (each gene keeps its share of
positive pairs), a stricter null in which hub genes, e.g. TFs, are as common
among negatives as among positives.

What to expect per kind: family and co-expression relations are clique-like
(partners of partners are partners), so held-out pairs are predictable.
TF→target pairs are bipartite: skip-gram makes genes with shared partners
similar, i.e. co-regulated targets (and TFs with shared targets), while a TF
and its own targets drift apart as training converges. For a GRN, score the
embedding with :func:`coregulated_pairs`; a held-out TF→target AUC is only
meaningful when the network has structure beyond the edges themselves.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ..errors import InputError
from .gene2vec import GeneVectors, as_pair_frame, family_pairs

NEGATIVE_KINDS = ("random", "degree")


def _unordered_unique(pairs) -> pd.DataFrame:
    frame = as_pair_frame(pairs)
    a = frame["gene_a"].to_numpy()
    b = frame["gene_b"].to_numpy()
    low = np.where(a < b, a, b)
    high = np.where(a < b, b, a)
    return pd.DataFrame({"gene_a": low, "gene_b": high}).drop_duplicates().reset_index(drop=True)


def _pair_keys(a, b) -> set[tuple[str, str]]:
    return {(x, y) if x < y else (y, x) for x, y in zip(a, b)}


def cosine_scores(vectors: GeneVectors, gene_a, gene_b) -> np.ndarray:
    """Cosine similarity of each pair (both genes must have vectors)."""
    rows_a = vectors.rows(gene_a)
    rows_b = vectors.rows(gene_b)
    if (rows_a < 0).any() or (rows_b < 0).any():
        raise ValueError("some genes have no vector")
    norms = np.linalg.norm(vectors.vectors.astype(np.float64), axis=1)
    norms[norms == 0] = 1.0
    unit = vectors.vectors / norms[:, None]
    return np.einsum("ij,ij->i", unit[rows_a], unit[rows_b]).astype(np.float64)


def sample_negative_pairs(vectors: GeneVectors, n: int, known: set[tuple[str, str]],
                          rng: np.random.Generator, kind: str = "random",
                          endpoints: np.ndarray | None = None) -> pd.DataFrame:
    """``n`` distinct gene pairs, both genes with vectors, not in ``known``.

    ``kind="random"``: both genes uniform over the vocabulary.
    ``kind="degree"``: both genes drawn from ``endpoints`` (the positives'
    genes, with repetition), so each gene appears as often as among positives.
    Returns fewer pairs when the vocabulary cannot supply ``n``.
    """
    if kind not in NEGATIVE_KINDS:
        raise InputError(None, "negatives", f"unknown negative kind '{kind}'", f"use one of {NEGATIVE_KINDS}")
    pool = np.asarray(vectors.ids, dtype=object) if kind == "random" else np.asarray(endpoints, dtype=object)
    chosen: dict[tuple[str, str], None] = {}  # insertion-ordered, hash-seed independent
    for _ in range(50):
        if len(chosen) >= n or len(pool) < 2:
            break
        draw = max(2 * (n - len(chosen)), 64)
        a = pool[rng.integers(0, len(pool), draw)]
        b = pool[rng.integers(0, len(pool), draw)]
        for x, y in zip(a, b):
            if x == y:
                continue
            key = (x, y) if x < y else (y, x)
            if key in known or key in chosen:
                continue
            chosen[key] = None
            if len(chosen) >= n:
                break
    keys = list(chosen)
    return pd.DataFrame({"gene_a": [k[0] for k in keys], "gene_b": [k[1] for k in keys]}, dtype=object)


def coregulated_pairs(regulatory_pairs, max_pairs_per_regulator: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Pairs of genes that share a regulator (targets of the same TF).

    gene2vec on TF→target pairs places genes with shared partners close
    together (skip-gram learns second-order similarity), so this is what a
    GRN embedding is expected to reproduce. Each regulator's targets form a
    group, capped as in :func:`gene2vec.family_pairs`.
    """
    frame = as_pair_frame(regulatory_pairs)
    groups = pd.DataFrame({"ensembl_id": frame["gene_b"], "group_id": frame["gene_a"]})
    return family_pairs(groups, max_pairs_per_regulator, seed)[["gene_a", "gene_b"]]


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    labels = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    return float(roc_auc_score(labels, np.concatenate([positive, negative])))


def _score(vectors: GeneVectors, positives: pd.DataFrame, known: set, rng: np.random.Generator,
           negatives: str) -> dict:
    in_vocab = positives["gene_a"].isin(vectors.ids) & positives["gene_b"].isin(vectors.ids)
    scored = positives[in_vocab]
    endpoints = np.concatenate([scored["gene_a"].to_numpy(), scored["gene_b"].to_numpy()])
    negative_pairs = sample_negative_pairs(vectors, len(scored), known, rng, negatives, endpoints)
    pos = cosine_scores(vectors, scored["gene_a"], scored["gene_b"]) if len(scored) else np.zeros(0)
    neg = (cosine_scores(vectors, negative_pairs["gene_a"], negative_pairs["gene_b"])
           if len(negative_pairs) else np.zeros(0))
    return {
        "auc": _auc(pos, neg),
        "n_positive_scored": int(len(scored)),
        "n_positive_unscorable": int((~in_vocab).sum()),
        "n_negative": int(len(negative_pairs)),
        "mean_cosine_positive": float(pos.mean()) if len(pos) else float("nan"),
        "mean_cosine_negative": float(neg.mean()) if len(neg) else float("nan"),
        "negatives": negatives,
    }


def pair_auc(vectors: GeneVectors, positive_pairs, seed: int = 0, negatives: str = "random") -> dict:
    """ROC-AUC of cosine similarity: known pairs vs as many random gene pairs.

    Pairs with a gene that has no vector are not scored (counted in
    ``n_positive_unscorable``). Returns ``auc``, the pair counts and the mean
    cosine of each class.
    """
    positives = _unordered_unique(positive_pairs)
    known = _pair_keys(positives["gene_a"], positives["gene_b"])
    result = _score(vectors, positives, known, np.random.default_rng(seed), negatives)
    return {"n_pairs": int(len(positives)), **result, "seed": seed}


def heldout_pair_auc(pairs, train_fn: Callable[[pd.DataFrame], GeneVectors], held_out_fraction: float = 0.1,
                     seed: int = 0, negatives: str = "random") -> dict:
    """Held-out link prediction: train on 1 − ``held_out_fraction`` of the pairs.

    The distinct unordered positive pairs are shuffled with ``seed``; the
    first ``held_out_fraction`` are hidden, ``train_fn`` gets the rest as
    DataFrame(gene_a, gene_b) and returns GeneVectors. Hidden pairs whose
    genes both got a vector are scored against the same number of random
    pairs (both genes in the vocabulary, neither a training nor a hidden
    pair) by cosine similarity; the result holds the ROC-AUC
    (``sklearn.metrics.roc_auc_score``) and the numbers of pairs.
    """
    if not 0 < held_out_fraction < 1:
        raise InputError(None, "held_out_fraction", f"must be between 0 and 1, got {held_out_fraction}",
                         "hold out a fraction such as 0.1")
    positives = _unordered_unique(pairs)
    if len(positives) < 2:
        raise InputError(None, "pairs", f"only {len(positives)} distinct pairs",
                         "need at least two pairs to hold some out")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(positives))
    n_held = min(len(positives) - 1, max(1, int(round(held_out_fraction * len(positives)))))
    held = positives.iloc[order[:n_held]].reset_index(drop=True)
    train = positives.iloc[order[n_held:]].reset_index(drop=True)
    vectors = train_fn(train)
    known = _pair_keys(positives["gene_a"], positives["gene_b"])
    result = _score(vectors, held, known, rng, negatives)
    return {"n_pairs": int(len(positives)), "n_train_pairs": int(len(train)), "n_heldout_pairs": int(n_held),
            **result, "held_out_fraction": held_out_fraction, "seed": seed,
            "n_genes_with_vectors": len(vectors)}
