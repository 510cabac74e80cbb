"""Perturb-seq inputs: the processed-AnnData loader, pseudo-bulk profiles, DE genes,
GEARS's simulation split and the two gene graphs (GO Jaccard, co-expression).

The layout is GEARS's ``perturb_processed.h5ad`` (the official processed Norman
data and the demo both use it): ``X`` log-normalised expression, ``obs.condition``
``ctrl`` / ``A+ctrl`` / ``A+B``, ``var.gene_name`` gene symbols.
"""

from __future__ import annotations

import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from genecompass.errors import InputError

PROCESSED_NAME = "perturb_processed.h5ad"


def condition_genes(condition: str) -> list[str]:
    """Perturbed genes of a condition ('A+ctrl' -> [A], 'A+B' -> [A, B], 'ctrl' -> [])."""
    return [g for g in str(condition).split("+") if g != "ctrl"]


def _processed_file(path: Path) -> Path:
    if path.is_dir():
        found = sorted(path.rglob(PROCESSED_NAME))
        if not found:
            raise InputError(path, PROCESSED_NAME, "the folder holds no processed Perturb-seq file",
                             f"point the dataset at a {PROCESSED_NAME} file or a folder/zip containing one")
        return found[0]
    return path


def load_perturb_dataset(path) -> ad.AnnData:
    """Read and check a processed Perturb-seq dataset (.h5ad, a folder, or GEARS's .zip)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "path", "no such file", "check tasks.perturbation.datasets[].data")
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory() as tmp:
            members = [m for m in archive.namelist() if m.endswith(PROCESSED_NAME)]
            if not members:
                raise InputError(path, PROCESSED_NAME, "the archive holds no processed Perturb-seq file",
                                 "use GEARS's dataset zip (e.g. norman.zip) or the .h5ad itself")
            archive.extract(members[0], tmp)
            adata = ad.read_h5ad(Path(tmp) / members[0])
    else:
        adata = ad.read_h5ad(_processed_file(path))
    check_perturb_dataset(adata, path)
    return adata


def check_perturb_dataset(adata: ad.AnnData, source) -> None:
    if "condition" not in adata.obs:
        raise InputError(source, "obs.condition", "missing",
                         "store each cell's perturbation as 'ctrl', 'GENE+ctrl' or 'GENE1+GENE2' in obs['condition']")
    if "gene_name" not in adata.var:
        raise InputError(source, "var.gene_name", "missing", "store the gene symbols in var['gene_name']")
    conditions = adata.obs["condition"].astype(str)
    if not (conditions == "ctrl").any():
        raise InputError(source, "obs.condition", "no control cells ('ctrl')",
                         "keep the non-targeting control cells, labelled 'ctrl'")
    bad = sorted({c for c in conditions.unique() if c != "ctrl" and not 1 <= len(condition_genes(c)) <= 2})
    if bad:
        raise InputError(source, "obs.condition", f"conditions not of the form 'A+ctrl' or 'A+B': {bad[:5]}",
                         "write single perturbations as 'GENE+ctrl' and pairs as 'GENE1+GENE2'")
    X = adata.X
    values = X.data if sp.issparse(X) else np.asarray(X)
    if values.size and (not np.isfinite(values).all() or values.min() < 0):
        raise InputError(source, "X", "negative or non-finite values",
                         "X must hold log-normalised expression (log1p of counts per 10,000)")


def select_genes(adata: ad.AnnData, n_top_genes: int | None) -> ad.AnnData:
    """Expressed genes, reduced to the ``n_top_genes`` most variable plus every perturbed gene measured."""
    X = adata.X.tocsc() if sp.issparse(adata.X) else np.asarray(adata.X)
    mean = np.asarray(X.mean(axis=0)).ravel()
    sq = np.asarray(X.multiply(X).mean(axis=0)).ravel() if sp.issparse(X) else (X ** 2).mean(axis=0)
    variance = sq - mean ** 2
    names = adata.var["gene_name"].astype(str).to_numpy()
    unique = ~pd.Index(names).duplicated()
    keep = (mean > 0) & unique
    if n_top_genes and keep.sum() > n_top_genes:
        order = np.argsort(-np.where(keep, variance, -np.inf))
        chosen = np.zeros(len(names), bool)
        chosen[order[:n_top_genes]] = True
        perturbed = {g for c in adata.obs["condition"].astype(str).unique() for g in condition_genes(c)}
        keep = keep & (chosen | np.isin(names, list(perturbed)))
    out = adata[:, keep].copy()
    out.var_names = out.var["gene_name"].astype(str).to_numpy()
    return out


def dense(X) -> np.ndarray:
    return np.asarray(X.todense() if sp.issparse(X) else X, dtype=np.float32)


def pseudobulk(adata: ad.AnnData) -> pd.DataFrame:
    """Mean expression per condition (rows) and gene (columns)."""
    conditions = adata.obs["condition"].astype(str).to_numpy()
    X = dense(adata.X)
    names = pd.unique(conditions)
    return pd.DataFrame(np.vstack([X[conditions == c].mean(axis=0) for c in names]),
                        index=names, columns=adata.var_names)


def top_de_genes(adata: ad.AnnData, n: int = 20) -> dict[str, list[str]]:
    """The ``n`` genes of largest |Welch t| against control per condition (GEARS's DE ranking)."""
    return rank_de_genes(dense(adata.X), adata.obs["condition"].astype(str).to_numpy(), "ctrl",
                         adata.var_names, n)


def rank_de_genes(X: np.ndarray, labels: np.ndarray, control: str, genes, n: int) -> dict[str, list[str]]:
    """Per label, the ``n`` genes of largest |Welch t| against the ``control`` samples."""
    ctrl = X[labels == control]
    c_mean, c_var, c_n = ctrl.mean(0), ctrl.var(0, ddof=1), len(ctrl)
    genes = np.asarray(genes)
    result = {}
    for label in pd.unique(labels):
        if label == control:
            continue
        cells = X[labels == label]
        cell_var = cells.var(0, ddof=1) if len(cells) > 1 else np.zeros(X.shape[1])
        se = np.sqrt(cell_var / len(cells) + c_var / c_n)
        t = np.where(se > 0, (cells.mean(0) - c_mean) / np.where(se > 0, se, 1), 0.0)
        result[label] = list(genes[np.argsort(-np.abs(t), kind="stable")[:n]])
    return result


# ---------------------------------------------------------------------------
# GEARS's simulation split
# ---------------------------------------------------------------------------


@dataclass
class Split:
    """Condition -> train / val / test, and the subgroup of each held-out condition."""

    assignment: dict[str, str]
    subgroup: dict[str, str]

    def conditions(self, part: str) -> list[str]:
        return [c for c, p in self.assignment.items() if p == part]

    def to_dict(self) -> dict:
        return {"assignment": self.assignment, "subgroup": self.subgroup}


def _simulation_split(perts: list[str], train_gene_fraction: float, seen2_train_fraction: float,
                      rng: np.random.Generator) -> tuple[list[str], dict[str, str]]:
    """One round of GEARS's 'simulation' split: (train conditions, held-out -> subgroup)."""
    genes = sorted({g for p in perts for g in condition_genes(p)})
    train_genes = set(rng.choice(genes, int(len(genes) * train_gene_fraction), replace=False).tolist())
    train, held = [], {}
    seen2 = []
    for pert in sorted(perts):
        parts = condition_genes(pert)
        n_seen = sum(g in train_genes for g in parts)
        if len(parts) == 1:
            (train.append(pert) if n_seen else held.__setitem__(pert, "unseen_single"))
        elif n_seen == 2:
            seen2.append(pert)
        else:
            held[pert] = f"combo_seen{n_seen}"
    keep = set(rng.choice(seen2, int(len(seen2) * seen2_train_fraction), replace=False).tolist()) if seen2 else set()
    for pert in seen2:
        (train.append(pert) if pert in keep else held.__setitem__(pert, "combo_seen2"))
    return train, held


def simulation_split(conditions, seed: int, train_gene_fraction: float = 0.75,
                     seen2_train_fraction: float = 0.75) -> Split:
    """GEARS's simulation split: unseen genes' singles and doubles with 0/1/2 seen genes are held out.

    Test: the singles of a held-out quarter of the genes, doubles with 0 or 1 gene
    seen, and a quarter of the doubles of two seen genes. Validation: the same
    construction once more on the training conditions (0.9 / 0.9), as GEARS does.
    """
    rng = np.random.default_rng(seed)
    perts = [c for c in conditions if c != "ctrl"]
    train, test = _simulation_split(perts, train_gene_fraction, seen2_train_fraction, rng)
    train, val = _simulation_split(train, 0.9, 0.9, rng)
    assignment = {"ctrl": "train", **{c: "train" for c in train}, **{c: "val" for c in val},
                  **{c: "test" for c in test}}
    return Split(assignment, {**val, **test})


# ---------------------------------------------------------------------------
# Gene graphs and gene features
# ---------------------------------------------------------------------------


def read_gmt(path) -> dict[str, set[str]]:
    """Gene sets of a GMT file (name, description, genes...), as gene -> set of term names."""
    gene_terms: dict[str, set[str]] = {}
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            fields = line.rstrip("\n").split("\t")
            if not line.strip():
                continue
            if len(fields) < 3:
                raise InputError(path, f"line {number}", "fewer than 3 tab-separated fields",
                                 "write one gene set per line: name, description, then its genes")
            for gene in fields[2:]:
                if gene:
                    gene_terms.setdefault(gene.upper(), set()).add(fields[0])
    if not gene_terms:
        raise InputError(path, "gene sets", "no genes", "give a GO gene-set file in GMT format")
    return gene_terms


def go_graph(genes: list[str], gene_terms: dict[str, set[str]], k: int = 20,
             threshold: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """GEARS's GO graph: Jaccard similarity of the genes' GO terms, above ``threshold``,
    each gene keeping its ``k + 1`` most similar sources (itself included).

    Returns (edge_index (2, E) of source -> target gene positions, edge weights).
    """
    terms = sorted({t for g in genes for t in gene_terms.get(g.upper(), ())})
    column = {t: i for i, t in enumerate(terms)}
    rows, cols = [], []
    for i, gene in enumerate(genes):
        for term in gene_terms.get(gene.upper(), ()):
            rows.append(i)
            cols.append(column[term])
    member = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(genes), len(terms)))
    shared = (member @ member.T).toarray()
    sizes = np.asarray(member.sum(axis=1)).ravel()
    union = sizes[:, None] + sizes[None, :] - shared
    jaccard = np.where(union > 0, shared / np.where(union > 0, union, 1), 0.0)
    return _top_k_edges(jaccard, k, threshold)


def _top_k_edges(similarity: np.ndarray, k: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """GEARS's graph rule: each target keeps its k + 1 most similar sources above ``threshold``."""
    sources, targets, weights = [], [], []
    for target in range(similarity.shape[0]):
        candidates = np.flatnonzero(similarity[:, target] > threshold)
        best = candidates[np.argsort(-similarity[candidates, target], kind="stable")[: k + 1]]
        sources += best.tolist()
        targets += [target] * len(best)
        weights += similarity[best, target].tolist()
    return np.array([sources, targets], dtype=np.int64).reshape(2, -1), np.array(weights, np.float32)


def coexpression_graph(X: np.ndarray, k: int = 20, threshold: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """GEARS's co-expression graph from training cells: |Pearson| above ``threshold``,
    each gene keeping its ``k + 1`` most correlated genes (itself included)."""
    X = np.asarray(X, dtype=np.float64)
    std = X.std(axis=0)
    centred = (X - X.mean(axis=0)) / np.where(std > 0, std, 1)
    corr = np.abs(centred.T @ centred / len(X))
    np.fill_diagonal(corr, 1.0)
    return _top_k_edges(corr, k, threshold)


def go_membership_features(genes: list[str], gene_terms: dict[str, set[str]], n_components: int = 256,
                           seed: int = 0) -> pd.DataFrame:
    """PCA of the binary gene x GO-term matrix (the benchmark paper's GO features), genes with terms only."""
    from sklearn.decomposition import PCA

    annotated = [g for g in genes if gene_terms.get(g.upper())]
    terms = sorted({t for g in annotated for t in gene_terms[g.upper()]})
    column = {t: i for i, t in enumerate(terms)}
    matrix = np.zeros((len(annotated), len(terms)), np.float32)
    for i, gene in enumerate(annotated):
        matrix[i, [column[t] for t in gene_terms[gene.upper()]]] = 1
    n = min(n_components, *matrix.shape)
    return pd.DataFrame(PCA(n, random_state=seed).fit_transform(matrix), index=annotated)
