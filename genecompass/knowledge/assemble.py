"""Align the per-species knowledge embeddings to the token dictionary.

Each knowledge kind (``grn``, ``promoter``, ``family``, ``coexpression``)
becomes one float32 matrix of shape (n_tokens, dim), row ``t`` belonging to
token id ``t``, plus a boolean mask of the tokens that got a vector.

Which gene's vector a token takes:

- homologous token: the human gene's vector (the token is named by the human
  ID, paper: "homologous genes ... uniformly represented using human Ensembl
  IDs"); when the human gene has none, the first of the token's mouse genes
  (``;``-joined under the one2many policy, in dictionary order) that has one;
- human-only token: the human gene's vector;
- mouse-only token: the mouse gene's vector;
- special tokens and tokens without a vector: zeros, mask False.

Everything is saved in ONE ``.safetensors`` file: tensors ``token_ids``
(int64), per kind ``{kind}`` (float32), ``{kind}_mask`` (bool) and
``{kind}_source`` (uint8: 0 none, 1 human gene, 2 mouse gene); metadata
``format``, ``dim``, ``kinds`` (JSON list), ``n_tokens`` and
``dictionary_sha256`` (:func:`dictionary_checksum`) so a model can check
that the rows are aligned to the dictionary it was built with.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import InputError
from ..utils import atomic_output
from .gene2vec import GeneVectors

KINDS = ("grn", "promoter", "family", "coexpression")
SPECIES = ("human", "mouse")
SOURCE_NONE, SOURCE_HUMAN, SOURCE_MOUSE = 0, 1, 2
GENE_CLASSES = ("homologous", "human_only", "mouse_only")
FORMAT = "genecompass.knowledge/1"
# The columns that decide which gene a token row stands for.
_CHECKSUM_COLUMNS = ("token_id", "token", "token_class", "human_ensembl_id", "mouse_ensembl_id")


@dataclass
class KnowledgeMatrices:
    """Knowledge vectors aligned to token ids (row t = token id t)."""

    token_ids: np.ndarray
    matrices: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    sources: dict[str, np.ndarray]
    dim: int
    dictionary_sha256: str
    metadata: dict = field(default_factory=dict)

    @property
    def kinds(self) -> list[str]:
        return list(self.matrices)

    @property
    def n_tokens(self) -> int:
        return int(len(self.token_ids))


def random_knowledge(vocab: int, dim: int, seed: int = 0, n_special: int = 4,
                     coverage: float = 0.8) -> KnowledgeMatrices:
    """Random knowledge for tests and benchmarks: each kind covers ~``coverage`` of the gene tokens."""
    rng = np.random.default_rng(seed)
    matrices, masks, sources = {}, {}, {}
    for kind in KINDS:
        mask = np.zeros(vocab, dtype=bool)
        mask[n_special:] = rng.random(vocab - n_special) < coverage
        matrices[kind] = (rng.normal(size=(vocab, dim)) * mask[:, None]).astype(np.float32)
        masks[kind] = mask
        sources[kind] = mask.astype(np.uint8)
    return KnowledgeMatrices(token_ids=np.arange(vocab), matrices=matrices, masks=masks, sources=sources,
                             dim=dim, dictionary_sha256="0" * 64)


def dictionary_checksum(dictionary: pd.DataFrame) -> str:
    """SHA-256 of the token → gene assignment (ids, tokens, classes, Ensembl IDs)."""
    missing = [c for c in _CHECKSUM_COLUMNS if c not in dictionary.columns]
    if missing:
        raise InputError(None, ", ".join(missing), "the token dictionary lacks these columns",
                         "read it with genecompass.dictionary.read_dictionary")
    digest = hashlib.sha256()
    for row in dictionary[list(_CHECKSUM_COLUMNS)].itertuples(index=False):
        digest.update(("\t".join("" if pd.isna(v) else str(v) for v in row) + "\n").encode("utf-8"))
    return digest.hexdigest()


def _gene_ids(cell) -> list[str]:
    if not isinstance(cell, str) or not cell:
        return []
    return [gene for gene in cell.split(";") if gene]


def assemble_knowledge(dictionary: pd.DataFrame, embeddings: dict[str, dict[str, GeneVectors]],
                       dim: int) -> KnowledgeMatrices:
    """One (n_tokens × dim) float32 matrix and coverage mask per knowledge kind.

    ``embeddings[kind][species]`` holds that species' gene vectors (a species
    may be absent). Kinds must be among ``KINDS``; they are stored in that order.
    """
    unknown = [k for k in embeddings if k not in KINDS]
    if unknown:
        raise InputError(None, "knowledge kinds", f"unknown kinds {unknown}", f"use kinds among {list(KINDS)}")
    for kind, per_species in embeddings.items():
        for species, vectors in per_species.items():
            if species not in SPECIES:
                raise InputError(None, f"{kind}.{species}", f"unknown species '{species}'",
                                 "use 'human' or 'mouse'")
            if vectors.dim != dim:
                raise InputError(None, f"{kind}.{species}",
                                 f"embedding size {vectors.dim} differs from the model's {dim}",
                                 "train every knowledge embedding with the model's hidden size")

    token_ids = dictionary["token_id"].to_numpy(dtype=np.int64)
    if not np.array_equal(token_ids, np.arange(len(dictionary))):
        raise InputError(None, "token_id", "token ids are not 0..N-1 in order",
                         "read the dictionary with genecompass.dictionary.read_dictionary")
    classes = dictionary["token_class"].to_numpy()
    human_ids = [_gene_ids(v) for v in dictionary["human_ensembl_id"]]
    mouse_ids = [_gene_ids(v) for v in dictionary["mouse_ensembl_id"]]

    matrices, masks, sources = {}, {}, {}
    # Every kind is stored, so the model sees one layout; an absent kind is all
    # zeros with an all-False mask.
    for kind in KINDS:
        human = embeddings.get(kind, {}).get("human")
        mouse = embeddings.get(kind, {}).get("mouse")
        matrix = np.zeros((len(token_ids), dim), dtype=np.float32)
        source = np.zeros(len(token_ids), dtype=np.uint8)
        for t, token_class in enumerate(classes):
            if token_class not in GENE_CLASSES:
                continue
            # Human first (homologous and human-only tokens), then mouse genes in order.
            candidates = ([(human, g, SOURCE_HUMAN) for g in human_ids[t]]
                          + [(mouse, g, SOURCE_MOUSE) for g in mouse_ids[t]])
            for vectors, gene, origin in candidates:
                row = vectors.row(gene) if vectors is not None else None
                if row is not None:
                    matrix[t] = vectors.vectors[row]
                    source[t] = origin
                    break
        matrices[kind] = matrix
        sources[kind] = source
        masks[kind] = source != SOURCE_NONE
    return KnowledgeMatrices(token_ids=token_ids, matrices=matrices, masks=masks, sources=sources, dim=dim,
                             dictionary_sha256=dictionary_checksum(dictionary))


def coverage_table(knowledge: KnowledgeMatrices, dictionary: pd.DataFrame) -> pd.DataFrame:
    """Per kind and token class (and ``all`` gene tokens): tokens, covered, fraction.

    ``n_from_human`` / ``n_from_mouse`` count where the vectors came from (a
    homologous token covered from mouse used the fallback).
    """
    classes = dictionary["token_class"].to_numpy()
    rows = []
    for kind in knowledge.kinds:
        source = knowledge.sources[kind]
        for token_class in (*GENE_CLASSES, "all"):
            select = np.isin(classes, GENE_CLASSES) if token_class == "all" else classes == token_class
            n_tokens = int(select.sum())
            covered = source[select] != SOURCE_NONE
            rows.append({
                "kind": kind, "token_class": token_class, "n_tokens": n_tokens,
                "n_covered": int(covered.sum()),
                "fraction": float(covered.mean()) if n_tokens else 0.0,
                "n_from_human": int((source[select] == SOURCE_HUMAN).sum()),
                "n_from_mouse": int((source[select] == SOURCE_MOUSE).sum()),
            })
    return pd.DataFrame(rows)


def plot_coverage(coverage: pd.DataFrame, path) -> None:
    """Bar chart: fraction of tokens with a vector, per kind and token class."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from genecompass.plotting import save_figure

    kinds = list(dict.fromkeys(coverage["kind"]))
    classes = list(dict.fromkeys(coverage["token_class"]))
    figure = Figure(figsize=(1.6 + 1.5 * max(1, len(kinds)), 3.6))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(classes))
    for c, token_class in enumerate(classes):
        part = coverage[coverage["token_class"] == token_class].set_index("kind").reindex(kinds)
        x = np.arange(len(kinds)) + (c - (len(classes) - 1) / 2) * width
        bars = axes.bar(x, part["fraction"].fillna(0).to_numpy(), width, label=token_class)
        for bar, n_covered, n_tokens in zip(bars, part["n_covered"], part["n_tokens"]):
            axes.annotate(f"{int(n_covered)}/{int(n_tokens)}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                          ha="center", va="bottom", fontsize=6, rotation=90)
    axes.set_xticks(np.arange(len(kinds)), kinds)
    axes.set_ylim(0, 1.25)
    axes.set_ylabel("fraction of tokens with a vector")
    axes.set_title("Knowledge embedding coverage")
    axes.legend(fontsize=7, ncol=len(classes), loc="upper center")
    figure.tight_layout()
    save_figure(figure, path, dpi=150)


def save_knowledge(knowledge: KnowledgeMatrices, path, metadata: dict | None = None) -> None:
    """Write all kinds to ONE ``.safetensors`` file (see the module docstring)."""
    from safetensors.numpy import save_file

    tensors = {"token_ids": knowledge.token_ids.astype(np.int64)}
    for kind in knowledge.kinds:
        tensors[kind] = np.ascontiguousarray(knowledge.matrices[kind], dtype=np.float32)
        tensors[f"{kind}_mask"] = knowledge.masks[kind].astype(bool)
        tensors[f"{kind}_source"] = knowledge.sources[kind].astype(np.uint8)
    header = {str(k): str(v) for k, v in {**knowledge.metadata, **(metadata or {})}.items()}
    header.update({"format": FORMAT, "dim": str(knowledge.dim), "kinds": json.dumps(knowledge.kinds),
                   "n_tokens": str(knowledge.n_tokens), "dictionary_sha256": knowledge.dictionary_sha256})
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)


def load_knowledge(path, dictionary: pd.DataFrame | None = None) -> KnowledgeMatrices:
    """Read a file written by :func:`save_knowledge`.

    With ``dictionary``, checks that the file was assembled for that exact
    token dictionary and raises :class:`InputError` otherwise.
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        header = dict(handle.metadata() or {})
        if header.get("format") != FORMAT:
            raise InputError(path, "format", "not a knowledge-embedding file",
                             "write it with genecompass.knowledge.assemble.save_knowledge")
        kinds = json.loads(header["kinds"])
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    extra = {k: v for k, v in header.items()
             if k not in ("format", "dim", "kinds", "n_tokens", "dictionary_sha256")}
    knowledge = KnowledgeMatrices(
        token_ids=tensors["token_ids"],
        matrices={kind: tensors[kind] for kind in kinds},
        masks={kind: tensors[f"{kind}_mask"].astype(bool) for kind in kinds},
        sources={kind: tensors[f"{kind}_source"] for kind in kinds},
        dim=int(header["dim"]), dictionary_sha256=header["dictionary_sha256"], metadata=extra)
    if dictionary is not None:
        check_alignment(knowledge, dictionary, path)
    return knowledge


def check_alignment(knowledge: KnowledgeMatrices, dictionary: pd.DataFrame, path=None) -> None:
    """Raise :class:`InputError` unless ``knowledge`` rows match ``dictionary``'s tokens."""
    expected = dictionary_checksum(dictionary)
    if knowledge.dictionary_sha256 != expected or knowledge.n_tokens != len(dictionary):
        raise InputError(path, "dictionary_sha256",
                         f"assembled for another token dictionary ({knowledge.n_tokens} tokens, "
                         f"sha256 {knowledge.dictionary_sha256[:12]}…; this one: {len(dictionary)} tokens, "
                         f"{expected[:12]}…)",
                         "re-run the knowledge assembly after rebuilding the dictionary")
