"""Library-size normalisation shared by tokenization and co-expression."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

DEFAULT_TARGET_SUM = 10_000.0


def as_csr(matrix) -> sp.csr_matrix:
    """Any matrix as scipy CSR (dense input is converted)."""
    if sp.issparse(matrix):
        return sp.csr_matrix(matrix)
    return sp.csr_matrix(np.asarray(matrix))


def cell_totals(counts: sp.csr_matrix) -> np.ndarray:
    """Per-row sums as float64; exact for integer counts (int64 running sum)."""
    acc_dtype = np.int64 if np.issubdtype(counts.data.dtype, np.integer) else np.float64
    running = np.zeros(counts.nnz + 1, dtype=acc_dtype)
    np.cumsum(counts.data, dtype=acc_dtype, out=running[1:])
    return (running[counts.indptr[1:]] - running[counts.indptr[:-1]]).astype(np.float64)


def normalise(counts, target_sum: float = DEFAULT_TARGET_SUM) -> sp.csr_matrix:
    """Return counts / cell total x ``target_sum`` as a float64 CSR matrix.

    Cells with no counts stay empty. Works on one chunk of cells at a time.
    """
    counts = as_csr(counts)
    totals = cell_totals(counts)
    rows = np.repeat(np.arange(counts.shape[0], dtype=np.int64), np.diff(counts.indptr))
    with np.errstate(divide="ignore", invalid="ignore"):
        data = counts.data / totals[rows] * target_sum
    out = sp.csr_matrix((data, counts.indices.copy(), counts.indptr.copy()), shape=counts.shape)
    out.eliminate_zeros()
    return out
