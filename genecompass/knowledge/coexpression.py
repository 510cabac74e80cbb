"""Co-expressed gene pairs from QC'd count matrices (input to gene2vec).

Paper, "Co-expression embeddings": 3,000 cells are sampled uniformly from
each expression matrix; the Pearson correlation coefficient (PCC) of two
genes is computed over the cells in which both are expressed (count ≥ 1);
pairs with PCC > 0.8 are embedded with gene2vec.

Here:

- cells: ``max_cells`` (3,000) drawn uniformly without replacement with a
  seeded generator, all cells when the matrix has fewer;
- expression (``values``): by default log1p(counts / cell total × 10,000),
  the cell total being the sum of the cell's counts over all genes of the
  matrix; or ``log_counts`` = log1p(counts). Caution: over the cells where
  both genes are expressed, a gene detected mostly at count 1 has the
  normalised value log1p(10,000 / total), a function of library size only,
  so two such genes correlate near 1 whatever their biology. On the demo
  world the PCC > 0.8 pairs of normalised values are all such pairs (none
  in a planted module); log1p(counts) is free of that effect (constant
  values have no PCC) and finds the planted modules;
- a pair is evaluated only when at least ``min_cells`` cells express both
  genes (a PCC over a handful of cells is noise), so genes expressed in fewer
  than ``min_cells`` sampled cells are skipped up front;
- a pair is undefined (never reported) when either gene has the same value in
  all co-expressing cells.

All pair statistics come from sparse matrix products over gene blocks: with
B the 0/1 expression indicator, X the values and X2 = X², for genes i, j:
n = BᵢᵀBⱼ, Sx = XᵢᵀBⱼ, Sy = BᵢᵀXⱼ, Sxx = X2ᵢᵀBⱼ, Syy = BᵢᵀX2ⱼ, Sxy = XᵢᵀXⱼ
(X is zero where a gene is not expressed, so each sum runs over the
co-expressing cells only), and
PCC = (n·Sxy − Sx·Sy) / sqrt((n·Sxx − Sx²)(n·Syy − Sy²)).
Only dense blocks of ``block_size`` × ``block_size`` are held at once, so
memory stays bounded for 20k+ genes.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import InputError
from ..genes import strip_version
from ..normalize import normalise

log = logging.getLogger(__name__)



def sample_cells(n_cells: int, max_cells: int = 3000, seed: int = 0) -> np.ndarray:
    """Sorted row indices of ``max_cells`` cells drawn uniformly (all if fewer)."""
    if n_cells <= max_cells:
        return np.arange(n_cells)
    return np.sort(np.random.default_rng(seed).choice(n_cells, size=max_cells, replace=False))


VALUE_KINDS = ("normalized", "log_counts")


def expression_values(counts, values: str = "normalized") -> sp.csr_matrix:
    """The values correlated: ``normalized`` = log1p(counts / total × 10,000),
    ``log_counts`` = log1p(counts)."""
    if values == "normalized":
        return log_normalize(counts)
    if values == "log_counts":
        logged = sp.csr_matrix(counts, dtype=np.float64)
        logged.data = np.log1p(logged.data)
        return logged
    raise InputError(None, "values", f"unknown expression values '{values}'", f"use one of {VALUE_KINDS}")


def log_normalize(counts) -> sp.csr_matrix:
    """log1p(counts / cell total × 10,000) as float64 CSR (empty cells stay zero)."""
    values = normalise(counts)
    values.data = np.log1p(values.data)
    return values


def _gene_blocks(n_genes: int, block_size: int) -> list[slice]:
    return [slice(start, min(start + block_size, n_genes)) for start in range(0, n_genes, block_size)]


def coexpressed_pairs(counts, gene_ids, threshold: float = 0.8, min_cells: int = 20,
                      block_size: int = 2048, values: str = "normalized") -> tuple[pd.DataFrame, dict]:
    """Gene pairs whose PCC over their co-expressing cells exceeds ``threshold``.

    ``counts``: cells × genes raw counts (already sampled); ``gene_ids`` one
    per column. Returns DataFrame(gene_a, gene_b, pcc, n_cells) with gene_a
    before gene_b in column order, and a stats dict (seconds, genes kept,
    pairs evaluated, pairs selected).
    """
    started = time.perf_counter()
    counts = sp.csr_matrix(counts)
    gene_ids = np.asarray(list(gene_ids), dtype=object)
    if counts.shape[1] != len(gene_ids):
        raise ValueError(f"{counts.shape[1]} columns but {len(gene_ids)} gene ids")
    if min_cells < 2:
        raise InputError(None, "min_cells", f"must be at least 2, got {min_cells}",
                         "a correlation needs at least two co-expressing cells; use e.g. 20")

    expressed_values = expression_values(counts, values)
    expressed = sp.csr_matrix(counts >= 1, dtype=np.float64)
    # Keep values only where count >= 1 (drops explicit zeros and fractional entries).
    expressed_values = expressed_values.multiply(expressed).tocsr()
    keep = np.flatnonzero(np.asarray(expressed.sum(axis=0)).ravel() >= min_cells)
    # Column-sliced CSC; transposes of CSC blocks are CSR, the fast left operand.
    indicator = expressed[:, keep].tocsc()
    value_cols = expressed_values[:, keep].tocsc()
    squares = value_cols.multiply(value_cols).tocsc()
    kept_ids = gene_ids[keep]

    blocks = _gene_blocks(len(keep), block_size)
    chunks = []
    n_evaluated = 0
    for bi, rows in enumerate(blocks):
        B_i, X_i, X2_i = indicator[:, rows], value_cols[:, rows], squares[:, rows]
        B_iT, X_iT, X2_iT = B_i.T.tocsr(), X_i.T.tocsr(), X2_i.T.tocsr()
        for cols in blocks[bi:]:
            B_j, X_j, X2_j = indicator[:, cols], value_cols[:, cols], squares[:, cols]
            n = (B_iT @ B_j).toarray()
            enough = n >= min_cells
            if rows == cols:
                enough &= np.triu(np.ones_like(enough), k=1)  # each pair once, no self-pairs
            if not enough.any():
                continue
            sx = (X_iT @ B_j).toarray()
            sy = (B_iT @ X_j).toarray()
            sxx = (X2_iT @ B_j).toarray()
            syy = (B_iT @ X2_j).toarray()
            sxy = (X_iT @ X_j).toarray()
            var_x = n * sxx - sx * sx
            var_y = n * syy - sy * sy
            # Relative guard against round-off: a gene constant over the
            # co-expressing cells has variance ~0 and no defined PCC.
            defined = enough & (var_x > 1e-12 * n * sxx) & (var_y > 1e-12 * n * syy)
            n_evaluated += int(defined.sum())
            with np.errstate(invalid="ignore", divide="ignore"):
                pcc = (n * sxy - sx * sy) / np.sqrt(np.where(defined, var_x * var_y, 1.0))
            hit_r, hit_c = np.nonzero(defined & (pcc > threshold))
            if len(hit_r):
                chunks.append(pd.DataFrame({
                    "gene_a": kept_ids[rows.start + hit_r], "gene_b": kept_ids[cols.start + hit_c],
                    "pcc": pcc[hit_r, hit_c], "n_cells": n[hit_r, hit_c].astype(np.int64)}))
    pairs = (pd.concat(chunks, ignore_index=True) if chunks else
             pd.DataFrame({"gene_a": pd.Series(dtype=object), "gene_b": pd.Series(dtype=object),
                           "pcc": pd.Series(dtype=np.float64), "n_cells": pd.Series(dtype=np.int64)}))
    stats = {
        "n_cells": int(counts.shape[0]),
        "n_genes": int(counts.shape[1]),
        "n_genes_kept": int(len(keep)),
        "n_pairs_candidate": int(len(keep) * (len(keep) - 1) // 2),
        "n_pairs_evaluated": n_evaluated,
        "n_pairs_selected": int(len(pairs)),
        "n_blocks": len(blocks),
        "threshold": threshold,
        "min_cells": min_cells,
        "values": values,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return pairs, stats


def coexpression_from_h5ad(paths, species: str | None = None, threshold: float = 0.8, min_cells: int = 20,
                           max_cells: int = 3000, seed: int = 0, block_size: int = 2048,
                           values: str = "normalized",
                           min_matrix_cells: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Co-expressed pairs of each QC'd matrix (``.h5ad``), computed per matrix.

    Each matrix gives its own pairs (as gene2vec took pairs from each
    dataset), so a pair co-expressed in several samples appears once per
    sample and weighs more. Cells are sampled with ``seed`` plus the file's
    position in ``paths``. Gene IDs lose any version suffix. When ``species``
    is given every file's ``uns["species"]`` must match it. A matrix with
    fewer than ``min_matrix_cells`` cells gives no pairs (its correlations
    rest on too few cells to trust; it is still listed in the stats).

    Returns (pairs: DataFrame(gene_a, gene_b, pcc, n_cells, sample),
    stats: one row per matrix with the cost: seconds, cells, genes, pairs
    evaluated and selected).
    """
    import anndata as ad

    all_pairs, all_stats = [], []
    for position, path in enumerate(paths):
        started = time.perf_counter()
        adata = ad.read_h5ad(path, backed="r")
        try:
            found = adata.uns.get("species") if adata.uns is not None else None
            if species is not None and found is not None and str(found) != species:
                raise InputError(path, "uns.species", f"matrix is '{found}', expected '{species}'",
                                 "list the matrix under its own species")
            n_cells_total = int(adata.n_obs)
            rows = sample_cells(n_cells_total, max_cells, seed + position)
            counts = adata.X[rows] if len(rows) else sp.csr_matrix((0, adata.n_vars))
            counts = sp.csr_matrix(counts)
            gene_ids = list(strip_version(list(adata.var_names)))
            sample = str(adata.uns.get("sample", "")) if adata.uns is not None else ""
        finally:
            if adata.isbacked:
                adata.file.close()
        if len(set(gene_ids)) != len(gene_ids):
            raise InputError(path, "var_names", "gene IDs repeat after removing version suffixes",
                             "use the QC output, whose genes are unique Ensembl IDs")
        if n_cells_total < min_matrix_cells:
            log.warning("co-expression %s: %d cells, fewer than %d: no pairs taken from it",
                        path, n_cells_total, min_matrix_cells)
            counts = counts[:0]
        pairs, stats = coexpressed_pairs(counts, gene_ids, threshold, min_cells, block_size, values)
        sample = sample or str(path)
        pairs["sample"] = sample
        stats = {"sample": sample, "path": str(path), "n_cells_total": n_cells_total, **stats,
                 "seconds_total": round(time.perf_counter() - started, 3)}
        log.info("co-expression %s: %d cells, %d genes kept, %d pairs evaluated, %d selected in %.1f s",
                 sample, stats["n_cells"], stats["n_genes_kept"], stats["n_pairs_evaluated"],
                 stats["n_pairs_selected"], stats["seconds_total"])
        all_pairs.append(pairs)
        all_stats.append(stats)
    pairs = (pd.concat(all_pairs, ignore_index=True) if all_pairs else
             pd.DataFrame(columns=["gene_a", "gene_b", "pcc", "n_cells", "sample"]))
    return pairs, pd.DataFrame(all_stats)
