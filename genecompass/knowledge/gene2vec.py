"""gene2vec: gene embeddings from gene-pair lists (GRN, gene family, co-expression).

Paper, "Knowledge embedding and incorporation": TF→target pairs of the GRNs,
pairs of genes in the same gene family and co-expressed gene pairs (PCC > 0.8)
are each "embedded into vectors using the gene2vec method" (Du et al. 2019),
with the embedding size raised to the model's hidden size (768 for Base).

gene2vec treats every gene pair as a two-word sentence and trains word2vec
skip-gram on them, so genes that share many partners end up with similar
vectors. One implementation serves all three knowledge kinds; only the pair
list differs.

Vectors are stored as ``.safetensors`` (tensor ``vectors``, float32, one row
per gene) with the gene IDs in the file's metadata (``ids``, a JSON list in
row order) — one self-contained file, no pickle.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import InputError
from ..utils import atomic_output

log = logging.getLogger(__name__)

FORMAT = "genecompass.gene_vectors/1"


@dataclass
class GeneVectors:
    """One vector per gene: ``vectors[i]`` belongs to ``ids[i]``."""

    ids: list[str]
    vectors: np.ndarray
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ids = [str(gene) for gene in self.ids]
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.ids):
            raise ValueError(f"vectors of shape {self.vectors.shape} do not match {len(self.ids)} ids")
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("gene ids are not unique")
        self._row = {gene: row for row, gene in enumerate(self.ids)}

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, gene) -> bool:
        return gene in self._row

    def row(self, gene: str) -> int | None:
        """Row of ``gene`` in ``vectors``, or None when it has no vector."""
        return self._row.get(gene)

    def rows(self, genes) -> np.ndarray:
        """Rows of ``genes`` (-1 where a gene has no vector)."""
        return np.array([self._row.get(gene, -1) for gene in genes], dtype=np.int64)


def save_gene_vectors(vectors: GeneVectors, path, metadata: dict | None = None) -> None:
    """Write ``vectors`` to one ``.safetensors`` file (ids in the metadata)."""
    from safetensors.numpy import save_file

    header = {str(k): str(v) for k, v in {**vectors.metadata, **(metadata or {})}.items()}
    header.update({"format": FORMAT, "ids": json.dumps(vectors.ids), "dim": str(vectors.dim)})
    with atomic_output(path) as tmp:
        save_file({"vectors": vectors.vectors}, str(tmp), metadata=header)


def load_gene_vectors(path) -> GeneVectors:
    """Read a file written by :func:`save_gene_vectors`."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        header = handle.metadata() or {}
        if header.get("format") != FORMAT or "vectors" not in handle.keys():
            raise InputError(path, "format", "not a gene-vector file (no 'vectors' tensor with gene ids)",
                             "write it with genecompass.knowledge.gene2vec.save_gene_vectors")
        matrix = handle.get_tensor("vectors")
    ids = json.loads(header.pop("ids"))
    extra = {k: v for k, v in header.items() if k not in ("format", "dim")}
    return GeneVectors(ids=ids, vectors=matrix, metadata=extra)


# ---------------------------------------------------------------------------
# Pair lists
# ---------------------------------------------------------------------------


def _require_columns(table: pd.DataFrame, columns, what: str, path=None) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(path, ", ".join(missing), f"the {what} table lacks these columns "
                         f"(has {list(table.columns)})", f"provide columns {list(columns)}")


def as_pair_frame(pairs) -> pd.DataFrame:
    """Pairs as DataFrame(gene_a, gene_b) of strings, without missing IDs or self-pairs.

    Accepts a DataFrame with ``gene_a``/``gene_b`` columns or anything that
    numpy reads as an (n, 2) array. Row order and duplicates are kept.
    """
    if isinstance(pairs, pd.DataFrame):
        _require_columns(pairs, ("gene_a", "gene_b"), "gene pair")
        frame = pairs[["gene_a", "gene_b"]]
    else:
        array = np.asarray(pairs, dtype=object)
        if array.size == 0:
            array = array.reshape(0, 2)
        if array.ndim != 2 or array.shape[1] != 2:
            raise InputError(None, "pairs", f"expected an (n, 2) array of gene IDs, got shape {array.shape}",
                             "pass a DataFrame(gene_a, gene_b) or an (n, 2) array")
        frame = pd.DataFrame(array, columns=["gene_a", "gene_b"])
    frame = frame.dropna()
    frame = frame.astype(str)
    frame = frame[(frame["gene_a"] != frame["gene_b"]) & (frame["gene_a"] != "") & (frame["gene_b"] != "")]
    return frame.reset_index(drop=True)


def grn_pairs(network) -> pd.DataFrame:
    """TF→target pairs of one GRN table or of every table in a list.

    Each table has ``source_id`` and ``target_id`` (Ensembl IDs; rows whose
    IDs are missing, e.g. unmapped symbols, are dropped, as are self-loops).
    An edge found in several networks is kept once per network, so evidence
    from several networks weighs more, as gene2vec weighed pairs found in
    several datasets. Returns DataFrame(gene_a = TF, gene_b = target).
    """
    tables = [network] if isinstance(network, pd.DataFrame) else list(network)
    frames = []
    for table in tables:
        _require_columns(table, ("source_id", "target_id"), "GRN")
        frame = table[["source_id", "target_id"]].rename(columns={"source_id": "gene_a", "target_id": "gene_b"})
        frames.append(as_pair_frame(frame))
    if not frames:
        return pd.DataFrame({"gene_a": pd.Series(dtype=str), "gene_b": pd.Series(dtype=str)})
    return pd.concat(frames, ignore_index=True)


def family_pairs(groups: pd.DataFrame, max_pairs_per_group: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Pairs of genes that share a gene family (group).

    ``groups`` has ``ensembl_id`` and ``group_id`` columns, one row per
    (gene, group); a ``|``-joined ``group_id`` (the HGNC layout) is split.
    A group of n distinct genes has n(n−1)/2 pairs. Groups with at most
    ``max_pairs_per_group`` pairs give all of them. In a larger group every
    member draws k = max(1, max_pairs_per_group // n) partners uniformly
    without replacement from the other n−1 members (one seeded generator,
    groups in sorted order); the unordered pairs are deduplicated (i→j and
    j→i count once). So each member is in at least k pairs, and the group gives
    at most n·k pairs: at most ``max_pairs_per_group``, except a group with
    more members than the cap, which gives up to n pairs (one draw per member,
    so that no member is dropped).

    A pair shared by several groups is reported once (with its first group).
    Returns DataFrame(gene_a, gene_b, group_id) with gene_a < gene_b.
    """
    if max_pairs_per_group < 1:
        raise InputError(None, "max_pairs_per_group", f"must be at least 1, got {max_pairs_per_group}",
                         "set a positive cap on the number of pairs per gene family")
    _require_columns(groups, ("ensembl_id", "group_id"), "gene family")
    members = groups[["ensembl_id", "group_id"]].dropna().astype(str)
    members = members.assign(group_id=members["group_id"].str.split("|")).explode("group_id")
    members["group_id"] = members["group_id"].str.strip()
    members = members[(members["group_id"] != "") & (members["ensembl_id"] != "")]
    members = members.drop_duplicates().sort_values(["group_id", "ensembl_id"], kind="stable")

    rng = np.random.default_rng(seed)
    chunks_a, chunks_b, chunks_group = [], [], []
    for group_id, genes in members.groupby("group_id", sort=True)["ensembl_id"]:
        genes = genes.to_numpy()
        n = len(genes)
        if n < 2:
            continue
        if n * (n - 1) // 2 <= max_pairs_per_group:
            first, second = np.triu_indices(n, k=1)
        else:
            k = max(1, max_pairs_per_group // n)
            # Partners of member i: k distinct draws from the other n-1 members
            # (draw from 0..n-2, then skip i itself by shifting indices >= i).
            draws = np.stack([rng.choice(n - 1, size=k, replace=False) for _ in range(n)])
            members_i = np.repeat(np.arange(n), k)
            partners = draws.ravel()
            partners = partners + (partners >= members_i)
            low, high = np.minimum(members_i, partners), np.maximum(members_i, partners)
            unique = np.unique(low * n + high)
            first, second = unique // n, unique % n
        chunks_a.append(genes[first])
        chunks_b.append(genes[second])
        chunks_group.append(np.full(len(first), group_id, dtype=object))
    if not chunks_a:
        return pd.DataFrame({"gene_a": pd.Series(dtype=str), "gene_b": pd.Series(dtype=str),
                             "group_id": pd.Series(dtype=str)})
    pairs = pd.DataFrame({"gene_a": np.concatenate(chunks_a), "gene_b": np.concatenate(chunks_b),
                          "group_id": np.concatenate(chunks_group)})
    return pairs.drop_duplicates(["gene_a", "gene_b"]).reset_index(drop=True)


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def _stable_hash(text) -> int:
    # gensim seeds some vectors with hash(word); Python's str hash changes with
    # PYTHONHASHSEED, crc32 does not.
    return zlib.crc32(str(text).encode("utf-8"))


def pair_sentences(pairs, seed: int) -> list[list[str]]:
    """Two-gene sentences: every pair in both orders, shuffled with ``seed``."""
    frame = as_pair_frame(pairs)
    a = frame["gene_a"].to_numpy()
    b = frame["gene_b"].to_numpy()
    first = np.concatenate([a, b])
    second = np.concatenate([b, a])
    order = np.random.default_rng(seed).permutation(len(first))
    return [[first[i], second[i]] for i in order]


def train_gene2vec(pairs, dim: int, seed: int, epochs: int = 10, window: int = 1, negative: int = 5,
                   min_count: int = 1, workers: int = 1, alpha: float = 0.025, sample: float = 0.0,
                   ) -> GeneVectors:
    """Train skip-gram word2vec (gensim) on gene pairs; one vector per gene.

    ``pairs``: DataFrame(gene_a, gene_b) or an (n, 2) array of gene IDs. Each
    pair becomes the two sentences [a, b] and [b, a], shuffled once with
    ``seed``; ``window=1`` so a gene's only context is its partner. ``dim``
    is the embedding size (the model's hidden size); ``negative`` the
    number of negative samples per positive. ``sample`` is word2vec's
    down-sampling of frequent words, off by default: in a pair list a
    frequent gene is a hub (a TF with many targets, a large family), not a
    stop word, and dropping it from a two-gene sentence drops the whole pair.
    ``epochs``: 10 suits corpus-sized pair lists (10^5–10^7 pairs); a small
    list (the demo's ~10^3 pairs) needs ~100 to converge.

    What the vectors encode: skip-gram makes genes with the same partners
    similar. For clique-like relations (family, co-expression) partners
    themselves end up close; for TF→target pairs co-regulated genes end up
    close, while a TF and its targets need not be (see ``evaluate``).

    Reproducibility: with ``workers=1`` gensim processes the sentences in a
    fixed order and its random state comes from ``seed``; the word hash is
    replaced by crc32, so the vectors do not depend on PYTHONHASHSEED.
    Several workers are faster but not reproducible.
    """
    from gensim.models import Word2Vec

    if dim < 1:
        raise InputError(None, "dim", f"embedding size must be positive, got {dim}",
                         "set the knowledge embedding size to the model's hidden size")
    sentences = pair_sentences(pairs, seed)
    if not sentences:
        raise InputError(None, "pairs", "no gene pairs to train on (all missing or self-pairs)",
                         "check that the pair table maps to Ensembl IDs of this species")
    started = time.perf_counter()
    model = Word2Vec(
        sentences=sentences, vector_size=dim, window=window, min_count=min_count, sg=1, hs=0,
        negative=negative, alpha=alpha, sample=sample, epochs=epochs, seed=seed, workers=workers,
        hashfxn=_stable_hash, sorted_vocab=1,
    )
    seconds = time.perf_counter() - started
    log.info("gene2vec: %d pairs, %d genes, dim %d, %d epochs in %.1f s",
             len(sentences) // 2, len(model.wv.index_to_key), dim, epochs, seconds)
    metadata = {"method": "gene2vec (gensim Word2Vec skip-gram)", "n_pairs": len(sentences) // 2,
                "epochs": epochs, "window": window, "negative": negative, "seed": seed,
                "train_seconds": round(seconds, 3)}
    return GeneVectors(ids=list(model.wv.index_to_key), vectors=model.wv.vectors, metadata=metadata)
