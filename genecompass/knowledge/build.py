"""One function per knowledge job: pairs in, gene vectors and quality figures out.

The three gene2vec knowledge types (GRN, gene family, co-expression) differ
only in where their gene pairs come from; training and the quality check are
shared here. Each quality check hides a share of the pairs, trains on the rest
and asks whether the hidden pairs are more similar than random gene pairs
(ROC-AUC); the embedding that is kept is trained on all pairs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InputError
from .evaluate import heldout_pair_auc, pair_auc
from .gene2vec import GeneVectors, as_pair_frame, family_pairs, grn_pairs, train_gene2vec

log = logging.getLogger(__name__)
PAIR_KINDS = ("grn", "family", "coexpression")


@dataclass(frozen=True)
class Gene2VecSettings:
    dim: int
    seed: int
    epochs: int = 20
    negative: int = 5

    def train(self, pairs) -> GeneVectors:
        return train_gene2vec(pairs, dim=self.dim, seed=self.seed, epochs=self.epochs, negative=self.negative)


def knowledge_pairs(kind: str, table: pd.DataFrame, max_pairs_per_group: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Gene pairs of one knowledge type from its input table.

    grn: a network table (source_id, target_id); family: gene groups
    (ensembl_id, group_id); coexpression: co-expressed pairs (gene_a, gene_b).
    """
    if kind == "grn":
        return grn_pairs(table)
    if kind == "family":
        return family_pairs(table, max_pairs_per_group=max_pairs_per_group, seed=seed)
    if kind == "coexpression":
        return as_pair_frame(table)
    raise InputError(None, "kind", f"unknown knowledge type '{kind}'", f"use one of {list(PAIR_KINDS)}")


def grn_heldout_quality(edges: pd.DataFrame, settings: Gene2VecSettings, held_out_fraction: float) -> dict:
    """Held-out TF->target edges, scored two ways with a model trained without them.

    ``direct``: cosine of the TF and its hidden target. ``shared_regulator``:
    cosine of the hidden target and the TF's other (training) targets:
    skip-gram on pairs places genes with the same partners together, so this
    is the structure a GRN embedding carries into the model.
    """
    edges = as_pair_frame(edges).drop_duplicates().reset_index(drop=True)
    rng = np.random.default_rng(settings.seed)
    order = rng.permutation(len(edges))
    n_held = max(1, int(round(held_out_fraction * len(edges))))
    held, train = edges.iloc[order[:n_held]], edges.iloc[order[n_held:]]
    vectors = settings.train(train)
    targets_of = train.groupby("gene_a")["gene_b"].apply(list).to_dict()
    shared = [(target, other) for tf, target in zip(held["gene_a"], held["gene_b"])
              for other in targets_of.get(tf, []) if other != target]
    result = {"n_edges": int(len(edges)), "n_heldout_edges": int(n_held),
              "direct": pair_auc(vectors, held, seed=settings.seed)}
    if shared:
        result["shared_regulator"] = pair_auc(vectors, pd.DataFrame(shared, columns=["gene_a", "gene_b"]),
                                              seed=settings.seed)
    return result


def embed_pairs(kind: str, pairs: pd.DataFrame, settings: Gene2VecSettings,
                held_out_fraction: float = 0.1) -> tuple[GeneVectors, dict]:
    """Train the kept embedding on all pairs and measure held-out quality."""
    pairs = as_pair_frame(pairs)
    if len(pairs) < 2:
        raise InputError(None, kind, f"only {len(pairs)} gene pairs for the {kind} embedding",
                         "check the inputs of this knowledge type (are gene IDs mapped?)")
    log.info("%s: %d pairs over %d genes", kind, len(pairs), len(set(pairs["gene_a"]) | set(pairs["gene_b"])))
    if kind == "grn":
        quality = grn_heldout_quality(pairs, settings, held_out_fraction)
    else:
        quality = {"heldout": heldout_pair_auc(pairs, settings.train, held_out_fraction, seed=settings.seed)}
    vectors = settings.train(pairs)
    quality.update({"kind": kind, "n_pairs": int(len(pairs)), "n_genes": len(vectors), "dim": settings.dim})
    return vectors, quality


def quality_table(reports: dict) -> pd.DataFrame:
    """One row per knowledge job and check: kind, species, check, auc, pairs scored."""
    import json

    rows = []
    for name, path in sorted(reports.items()):
        kind, species = name.split("_")
        with open(path) as handle:
            quality = json.load(handle)
        for check in ("heldout", "direct", "shared_regulator", "family_pairs", "family_pairs_kmer_baseline"):
            if check in quality:
                section = quality[check]
                rows.append({"kind": kind, "species": species, "check": check, "auc": section.get("auc"),
                             "n_positive": section.get("n_positive_scored"),
                             "n_negative": section.get("n_negative")})
    return pd.DataFrame(rows, columns=["kind", "species", "check", "auc", "n_positive", "n_negative"])


def read_knowledge_inputs(named_paths: dict) -> tuple[dict, dict]:
    """Split ``{kind}_{species}`` vector files from ``{kind}_{species}_quality`` reports.

    Returns (embeddings[kind][species] -> GeneVectors, reports[f"{kind}_{species}"] -> path).
    """
    from .gene2vec import load_gene_vectors

    embeddings, reports = {}, {}
    for name, path in named_paths.items():
        if name.endswith("_quality"):
            reports[name.removesuffix("_quality")] = path
        else:
            kind, species = name.split("_")
            embeddings.setdefault(kind, {})[species] = load_gene_vectors(path)
    return embeddings, reports
