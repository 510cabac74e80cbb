"""Gene medians, rank-value tokenization of cells, and the pre-training corpus.

Stages (see docs/formats.md, sections "Gene medians" and "Corpus"):

1. ``sample_histogram``: one pass over a QC'd sample, in chunks of cells, that
   builds per token a histogram of log10(normalised non-zero expression).
   Histograms of samples merge by addition (``merge_histograms``), so a
   cluster computes one per sample in parallel; ``medians_from_histogram``
   turns the merged histogram into the corpus-wide token medians.
2. ``tokenize_sample``: a second pass that writes one Arrow shard per sample.
   Each cell becomes its non-zero tokens ranked by normalised / median
   (descending, ties by ascending token id), truncated to ``max_length``,
   with values log1p(normalised / median).
3. ``build_corpus``: joins the shards and splits train / validation.

Normalised expression is counts / (cell total over all genes of the file) x
``target_sum``. Genes mapped to the same token (one-to-many homology) have
their counts summed before normalising.

The per-cell work of both passes is done by numba kernels (section "Numba
kernels") that walk the cells of a CSR chunk in parallel.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp

from genecompass.errors import InputError
from genecompass.normalize import DEFAULT_TARGET_SUM, as_csr, cell_totals, normalise  # noqa: F401 (normalise: public API)
from genecompass.utils import atomic_output

log = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 2048
TOKEN_SCHEMES = ("paper", "released")   # see CellTokenizer
DEFAULT_CHUNK_SIZE = 2048   # cells read from the .h5ad at a time
HISTOGRAM_FORMAT_VERSION = 1


# --------------------------------------------------------------------------
# Normalisation and gene -> token mapping
# --------------------------------------------------------------------------

class GeneTokenMap:
    """Where each gene column of a sample goes in token space.

    ``token_ids`` are the sample's tokens ("local" tokens), ascending, so that
    local order equals token-id order; ``gene_local`` is each gene's local
    token, -1 for genes that are dropped. ``allowed_tokens`` (e.g. the tokens
    that have a median) restricts the tokens; genes of other tokens are
    dropped. Several genes may share a local token: their counts are summed.
    """

    def __init__(self, var_names: Sequence[str], gene_to_token: Mapping[str, int],
                 allowed_tokens: np.ndarray | None = None):
        var_names = [str(name) for name in var_names]
        global_token = np.array([gene_to_token.get(name, -1) for name in var_names], dtype=np.int64)
        mapped = global_token >= 0
        kept = mapped.copy()
        if allowed_tokens is not None:
            allowed = np.asarray(allowed_tokens, dtype=np.int64)
            kept &= np.isin(global_token, allowed)

        self.n_genes = len(var_names)
        self.unmapped_genes = [name for name, ok in zip(var_names, mapped) if not ok]
        self.n_genes_unmapped = len(self.unmapped_genes)
        self.n_genes_without_median = int(mapped.sum() - kept.sum())
        self.n_genes_kept = int(kept.sum())
        self.mapped = mapped

        self.token_ids, local = np.unique(global_token[kept], return_inverse=True)
        self.token_ids = self.token_ids.astype(np.int64)
        self.gene_local = np.full(self.n_genes, -1, dtype=np.int32)
        self.gene_local[kept] = local

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    def token_counts(self, counts: sp.csr_matrix) -> np.ndarray:
        """Number of distinct tokens with a positive count in each cell of a chunk."""
        return _count_tokens(*_kernel_csr(counts), self.gene_local, self.n_tokens, numba.get_num_threads())

    def normalised(self, counts: sp.csr_matrix, target_sum: float = DEFAULT_TARGET_SUM, per_cell_total: bool = True):
        """Token-space non-zeros of a chunk of cells, cell after cell.

        Returns ``(local, value)``: local token (int32) and normalised
        expression (float64) of each non-zero (cell, token) pair; without
        ``per_cell_total`` the raw counts (the released scheme's medians).
        """
        offsets = _offsets(self.token_counts(counts))
        local = np.empty(offsets[-1], dtype=np.int32)
        value = np.empty(offsets[-1], dtype=np.float64)
        _normalised_rows(*_kernel_csr(counts), self.gene_local, self.n_tokens, float(target_sum),
                         per_cell_total, offsets, numba.get_num_threads(), local, value)
        return local, value


def _kernel_csr(counts: sp.csr_matrix):
    """(indptr int64, indices, data) of a CSR chunk, as the kernels take them."""
    return counts.indptr.astype(np.int64, copy=False), counts.indices, counts.data


def _offsets(lengths: np.ndarray) -> np.ndarray:
    """Where each row's output starts, and the total at the end: prefix sum of ``lengths``."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


# --------------------------------------------------------------------------
# Numba kernels
# --------------------------------------------------------------------------
#
# The row kernels take a CSR chunk of cells x genes as (indptr, indices,
# data) and ``gene_local`` (GeneTokenMap), and split the rows (cells) into
# ``n_threads`` blocks of consecutive rows, one parallel task each, which
# allocates its scratch once. Kernels with a variable number of outputs per
# row write row i from offsets[i] (``_offsets`` of the rows' lengths) into
# arrays the caller allocates with numpy: numpy asks for huge pages, while
# arrays allocated in the kernel come in fresh 4 KiB pages each chunk, whose
# page faults cost about a fifth of the tokenization time.


@numba.njit(cache=True, nogil=True)
def _gather_row(start, stop, indices, data, gene_local, acc, row_local, row_count):
    """Token-space non-zeros of the cell whose entries are ``start:stop``.

    Fills ``row_local[:n]`` with the cell's distinct local tokens of positive
    count (in order of first gene) and ``row_count[:n]`` with their counts,
    summed over the genes of each token; returns ``(n, total)``, total being
    the count over all genes of the cell. ``acc`` (float64 zeros, one per
    local token) is scratch and is left zeroed.
    """
    total = 0.0
    n = 0
    for j in range(start, stop):
        x = data[j]
        total += x
        t = gene_local[indices[j]]
        if t >= 0 and x > 0:
            if acc[t] == 0.0:          # the token's first gene in this cell
                row_local[n] = t
                n += 1
            acc[t] += x
    for q in range(n):
        t = row_local[q]
        row_count[q] = acc[t]
        acc[t] = 0.0
    return n, total


@numba.njit(cache=True, parallel=True, nogil=True)
def _count_tokens(indptr, indices, data, gene_local, n_local, n_threads):
    """Per row, the number of distinct local tokens with a positive count."""
    n_rows = len(indptr) - 1
    n_tokens = np.empty(n_rows, dtype=np.int64)
    n_tasks = min(n_rows, n_threads)
    for task in numba.prange(n_tasks):
        last_row = np.full(n_local, -1, dtype=np.int64)     # last row in which a token was seen
        for i in range(task * n_rows // n_tasks, (task + 1) * n_rows // n_tasks):
            n = 0
            for j in range(indptr[i], indptr[i + 1]):
                t = gene_local[indices[j]]
                if t >= 0 and data[j] > 0 and last_row[t] != i:
                    last_row[t] = i
                    n += 1
            n_tokens[i] = n
    return n_tokens


@numba.njit(cache=True, parallel=True, nogil=True)
def _normalised_rows(indptr, indices, data, gene_local, n_local, target_sum, per_cell_total, offsets, n_threads,
                     local, value):
    """Local token and normalised value of each row's tokens, into ``local`` / ``value``.

    Without ``per_cell_total`` (the released scheme) the value is the raw count."""
    n_rows = len(indptr) - 1
    max_nnz = _max_row_nnz(indptr)
    n_tasks = min(n_rows, n_threads)
    for task in numba.prange(n_tasks):
        acc = np.zeros(n_local, dtype=np.float64)
        row_local = np.empty(max_nnz, dtype=np.int32)
        row_count = np.empty(max_nnz, dtype=np.float64)
        for i in range(task * n_rows // n_tasks, (task + 1) * n_rows // n_tasks):
            n, total = _gather_row(indptr[i], indptr[i + 1], indices, data, gene_local, acc,
                                   row_local, row_count)
            for q in range(n):
                local[offsets[i] + q] = row_local[q]
                value[offsets[i] + q] = row_count[q] / total * target_sum if per_cell_total else row_count[q]


@numba.njit(cache=True, parallel=True, nogil=True)
def _rank_rows(indptr, indices, data, gene_local, local_medians, local_token_ids, target_sum, per_cell_total,
               offsets, n_threads, ids, values):
    """Each row's top tokens by value = normalised / median, into ``ids`` / ``values``.

    Without ``per_cell_total`` (the released scheme) value = count / median.
    Row i gets offsets[i + 1] - offsets[i] of them (min(tokens, max_length)):
    token ids and values (before log1p), best first, equal values by
    ascending token id. The arithmetic is that of ``tokenize_cell_reference``,
    so values and order are identical to it.
    """
    n_rows = len(indptr) - 1
    max_nnz = _max_row_nnz(indptr)
    n_tasks = min(n_rows, n_threads)
    for task in numba.prange(n_tasks):
        acc = np.zeros(len(local_medians), dtype=np.float64)
        row_local = np.empty(max_nnz, dtype=np.int32)
        row_value = np.empty(max_nnz, dtype=np.float64)
        ranked_local = np.empty(max_nnz, dtype=np.int32)
        ranked_value = np.empty(max_nnz, dtype=np.float64)
        bucket_start = np.empty(8 * max_nnz + 1, dtype=np.int64)
        for i in range(task * n_rows // n_tasks, (task + 1) * n_rows // n_tasks):
            n, total = _gather_row(indptr[i], indptr[i + 1], indices, data, gene_local, acc,
                                   row_local, row_value)
            if per_cell_total:
                for q in range(n):
                    row_value[q] = row_value[q] / total * target_sum / local_medians[row_local[q]]
            else:
                for q in range(n):
                    row_value[q] = row_value[q] / local_medians[row_local[q]]
            _sort_row(row_value, row_local, n, bucket_start, ranked_value, ranked_local)
            for q in range(offsets[i + 1] - offsets[i]):
                ids[offsets[i] + q] = local_token_ids[ranked_local[q]]
                values[offsets[i] + q] = ranked_value[q]


@numba.njit(cache=True, nogil=True)
def _sort_row(value, local, n, bucket_start, sorted_value, sorted_local):
    """Order ``value[:n]`` (positive) and ``local[:n]`` (distinct) by value
    descending, then local ascending, into ``sorted_value`` / ``sorted_local``.

    A bucket sort: the bit patterns of positive floats grow with the value
    (roughly as its logarithm), so spreading them linearly over 4 n or more
    buckets leaves few values per bucket; an insertion sort then finishes
    the nearly sorted whole. Rows with a crowded bucket (many tied or very
    close values) are sorted by two argsorts instead, to stay n log n.
    ``bucket_start`` is scratch of at least 8 n + 1 integers.
    """
    if n == 0:
        return
    bits = value[:n].view(np.int64)
    hi = bits[0]
    lo = bits[0]
    for q in range(1, n):
        hi = max(hi, bits[q])
        lo = min(lo, bits[q])
    n_buckets = 4                      # a power of two >= 4 n
    while n_buckets < 4 * n:
        n_buckets *= 2
    shift = 0
    while (hi - lo) >> shift >= n_buckets:
        shift += 1
    # Counting sort by bucket (hi - bits) >> shift: the largest value first.
    bucket_start[:n_buckets + 1] = 0
    for q in range(n):
        bucket_start[((hi - bits[q]) >> shift) + 1] += 1
    crowded = 0
    for b in range(1, n_buckets + 1):
        crowded = max(crowded, bucket_start[b])
        bucket_start[b] += bucket_start[b - 1]
    if crowded > 32:
        by_local = np.argsort(local[:n])
        order = by_local[np.argsort(-value[by_local], kind="mergesort")]  # stable: ties stay by local
        for q in range(n):
            sorted_value[q] = value[order[q]]
            sorted_local[q] = local[order[q]]
        return
    for q in range(n):
        b = (hi - bits[q]) >> shift
        sorted_value[bucket_start[b]] = value[q]
        sorted_local[bucket_start[b]] = local[q]
        bucket_start[b] += 1
    for i in range(1, n):
        v = sorted_value[i]
        t = sorted_local[i]
        j = i - 1
        while j >= 0 and (sorted_value[j] < v or (sorted_value[j] == v and sorted_local[j] > t)):
            sorted_value[j + 1] = sorted_value[j]
            sorted_local[j + 1] = sorted_local[j]
            j -= 1
        sorted_value[j + 1] = v
        sorted_local[j + 1] = t


@numba.njit(cache=True, nogil=True)
def _max_row_nnz(indptr):
    longest = 0
    for i in range(len(indptr) - 1):
        longest = max(longest, indptr[i + 1] - indptr[i])
    return longest


@numba.njit(cache=True, nogil=True)
def _add_to_histogram(counts, rows, columns):
    """counts[rows[e], columns[e]] += 1 for each e (np.add.at, but fast)."""
    for e in range(len(rows)):
        counts[rows[e], columns[e]] += 1


# --------------------------------------------------------------------------
# Histograms and medians
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class BinSpec:
    """Fixed bins over log10(value); values outside fall into the edge bins."""

    n_bins: int = 1024
    log10_min: float = -3.0
    log10_max: float = 5.0

    def __post_init__(self):
        if self.n_bins < 1 or not self.log10_max > self.log10_min:
            raise ValueError(f"bad bin spec {self}: need n_bins >= 1 and log10_max > log10_min")

    @property
    def width(self) -> float:
        return (self.log10_max - self.log10_min) / self.n_bins

    def index(self, values: np.ndarray) -> np.ndarray:
        """Bin of each (positive) value."""
        with np.errstate(divide="ignore"):
            position = np.asarray(np.log10(values))
        position -= self.log10_min                 # in place: these arrays are large
        position /= self.width
        np.floor(position, out=position)
        np.clip(position, 0, self.n_bins - 1, out=position)
        return position.astype(np.int64)

    def as_array(self) -> np.ndarray:
        return np.array([self.n_bins, self.log10_min, self.log10_max], dtype=np.float64)

    @classmethod
    def from_array(cls, values) -> BinSpec:
        n_bins, lo, hi = (float(v) for v in values)
        return cls(int(n_bins), lo, hi)


@dataclass
class TokenHistogram:
    """Per token, counts of non-zero normalised values per log10 bin.

    ``token_ids`` ascending and unique; ``counts`` is CSR of shape
    (len(token_ids), bins.n_bins), int64; ``n_cells`` cells were read.
    """

    token_ids: np.ndarray
    counts: sp.csr_matrix
    bins: BinSpec
    n_cells: int = 0

    @property
    def n_nonzero(self) -> np.ndarray:
        """Number of non-zero values seen per token."""
        return np.asarray(self.counts.sum(axis=1)).ravel().astype(np.int64)

    @classmethod
    def empty(cls, bins: BinSpec = BinSpec()) -> TokenHistogram:
        return cls(np.zeros(0, np.int64), sp.csr_matrix((0, bins.n_bins), dtype=np.int64), bins, 0)

    @classmethod
    def from_values(cls, token_ids, values, bins: BinSpec = BinSpec(), n_cells: int = 0) -> TokenHistogram:
        """Histogram of (token, positive value) pairs given as two flat arrays."""
        token_ids = np.asarray(token_ids, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        tokens, local = np.unique(token_ids, return_inverse=True)
        flat = local * bins.n_bins + bins.index(values)
        dense = np.bincount(flat, minlength=len(tokens) * bins.n_bins).reshape(len(tokens), bins.n_bins)
        return cls._from_dense(tokens, dense, bins, n_cells)

    @classmethod
    def _from_dense(cls, tokens, dense, bins, n_cells) -> TokenHistogram:
        seen = np.flatnonzero(dense.any(axis=1))
        # Row blocks keep the conversion's temporaries small.
        blocks = [sp.csr_matrix(dense[seen[i:i + 1024]], dtype=np.int64) for i in range(0, len(seen), 1024)]
        counts = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, bins.n_bins), dtype=np.int64)
        return cls(np.asarray(tokens, np.int64)[seen], counts, bins, int(n_cells))

    def save(self, path) -> None:
        """Write to ``.npz`` (numeric arrays only; no pickle), atomically."""
        counts = sp.csr_matrix(self.counts)
        counts.sort_indices()
        with atomic_output(path) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(
                handle,
                format_version=np.int64(HISTOGRAM_FORMAT_VERSION),
                token_ids=self.token_ids.astype(np.int64),
                indptr=counts.indptr.astype(np.int64),
                indices=counts.indices.astype(np.int32),
                data=counts.data.astype(np.int64),
                bins=self.bins.as_array(),
                n_cells=np.int64(self.n_cells),
            )

    @classmethod
    def load(cls, path) -> TokenHistogram:
        try:
            with np.load(path, allow_pickle=False) as npz:
                version = int(npz["format_version"])
                if version != HISTOGRAM_FORMAT_VERSION:
                    raise InputError(path, "format_version", f"version {version} is not supported",
                                     "rebuild the histogram with this version of genecompass")
                bins = BinSpec.from_array(npz["bins"])
                token_ids = npz["token_ids"].astype(np.int64)
                counts = sp.csr_matrix((npz["data"], npz["indices"], npz["indptr"]),
                                       shape=(len(token_ids), bins.n_bins))
                return cls(token_ids, counts, bins, int(npz["n_cells"]))
        except KeyError as missing:
            raise InputError(path, str(missing), "array missing from the histogram file",
                             "rebuild it with genecompass.tokenize.sample_histogram") from None


def sample_histogram(h5ad_path, gene_to_token: Mapping[str, int], chunk_size: int = DEFAULT_CHUNK_SIZE, *,
                     bins: BinSpec = BinSpec(), target_sum: float = DEFAULT_TARGET_SUM,
                     progress: bool = False, scheme: str = "paper") -> TokenHistogram:
    """Histogram of log10(normalised non-zero expression) per token of one sample.

    Under ``scheme="released"`` the raw counts: the released tokenization divides
    counts, not normalised values, by the gene medians.

    Reads the sample in chunks of ``chunk_size`` cells; memory is
    O(tokens x bins + chunk), independent of the number of cells.
    """
    if scheme not in TOKEN_SCHEMES:
        raise ValueError(f"tokenization scheme must be one of {TOKEN_SCHEMES}, got '{scheme}'")
    with _CountsReader(h5ad_path) as reader:
        token_map = GeneTokenMap(reader.var_names, gene_to_token)
        _log_mapping(h5ad_path, token_map)
        # A token has at most one value per cell: int32 counts cannot overflow
        # below 2**31 cells, and half the size makes the updates faster.
        dtype = np.int32 if reader.n_cells < 2**31 else np.int64
        counts = np.zeros((token_map.n_tokens, bins.n_bins), dtype=dtype)
        for _, _, chunk in reader.chunks(chunk_size, progress, "histogram"):
            local, normalised = token_map.normalised(chunk, target_sum, scheme == "paper")
            _add_to_histogram(counts, local, bins.index(normalised))
        return TokenHistogram._from_dense(token_map.token_ids, counts, bins, reader.n_cells)


def merge_histograms(histograms: Iterable[TokenHistogram], batch_nnz: int = 1 << 24) -> TokenHistogram:
    """Sum histograms with identical bins (e.g. one per sample).

    Takes any iterable, e.g. a generator that loads one file at a time:
    memory stays within the merged histogram plus ``batch_nnz`` pending
    entries, however many samples there are.
    """
    bins, merged, pending, n_pending, n_cells = None, None, [], 0, 0
    for hist in histograms:
        if bins is None:
            bins = hist.bins
        elif hist.bins != bins:
            raise ValueError(f"cannot merge histograms with different bins: {bins} vs {hist.bins}")
        n_cells += hist.n_cells
        pending.append(_triplets(hist))
        n_pending += hist.counts.nnz
        if n_pending >= batch_nnz:
            merged, pending, n_pending = _fold(merged, pending, bins), [], 0
    if bins is None:
        raise ValueError("merge_histograms needs at least one histogram")
    merged = _fold(merged, pending, bins)
    merged.n_cells = n_cells
    return merged


def _triplets(hist: TokenHistogram):
    """(token id, bin, count) of every non-empty histogram cell."""
    coo = sp.coo_matrix(hist.counts)
    return hist.token_ids[coo.row], coo.col.astype(np.int64), coo.data.astype(np.int64)


def _fold(merged: TokenHistogram | None, pending: list, bins: BinSpec) -> TokenHistogram:
    parts = ([_triplets(merged)] if merged is not None else []) + pending
    if not parts:
        return TokenHistogram.empty(bins)
    tokens, columns, data = (np.concatenate(arrays) for arrays in zip(*parts))
    token_ids, rows = np.unique(tokens, return_inverse=True)
    counts = sp.csr_matrix((data, (rows, columns)), shape=(len(token_ids), bins.n_bins))  # sums duplicates
    counts.sort_indices()
    return TokenHistogram(token_ids.astype(np.int64), counts, bins, 0)


def medians_from_histogram(hist: TokenHistogram) -> pd.DataFrame:
    """Median of each token's non-zero values: DataFrame(token_id, median, n_nonzero).

    Each order statistic is placed inside its bin by linear interpolation in
    log space (the k-th of f values in a bin sits at (k - 0.5) / f of its
    width), so its error is below one bin width (1.8 % with the default
    bins). For an even count the two middle order statistics are averaged in
    linear space, like ``np.median``. Medians are rounded to 10 significant
    digits.
    """
    counts = sp.csr_matrix(hist.counts, dtype=np.int64)
    counts.eliminate_zeros()
    counts.sort_indices()
    n_nonzero = np.diff(np.concatenate([[0], np.cumsum(counts.data)])[counts.indptr])
    seen = n_nonzero > 0
    bins = hist.bins

    cumulative = np.cumsum(counts.data)                    # over all tokens, row after row
    before_row = np.concatenate([[0], cumulative])[counts.indptr[:-1]]

    def order_statistic(rank):                             # rank: 1-based, per token
        entry = np.searchsorted(cumulative, before_row + rank, side="left")
        in_bin = counts.data[entry]
        below = cumulative[entry] - in_bin - before_row
        fraction = (rank - below - 0.5) / in_bin
        return 10.0 ** (bins.log10_min + (counts.indices[entry] + fraction) * bins.width)

    n = n_nonzero[seen]
    before_row = before_row[seen]
    lower = order_statistic((n + 1) // 2)
    upper = order_statistic(n // 2 + 1)
    median = _round_significant(np.where(n % 2 == 1, lower, (lower + upper) / 2.0))
    return pd.DataFrame({
        "token_id": hist.token_ids[seen].astype(np.int64),
        "median": median,
        "n_nonzero": n.astype(np.int64),
    })


def _round_significant(values: np.ndarray, digits: int = 10) -> np.ndarray:
    """Round to ``digits`` significant digits (far below the bins' resolution).

    Interpolation can give medians one float64 step apart for what is the
    same number; rounding makes them equal, so their tokens tie exactly and
    rank by token id, and the medians round-trip through text unchanged.
    """
    exponent = np.floor(np.log10(values))
    scale = 10.0 ** (digits - 1 - exponent)
    return np.round(values * scale) / scale


def write_medians(medians: pd.DataFrame, path, token_names: Mapping[int, str] | None = None) -> None:
    """Write ``medians.tsv`` (token_id, token, median, n_nonzero)."""
    table = medians[["token_id", "median", "n_nonzero"]].copy()
    names = token_names or {}
    table.insert(1, "token", [names.get(int(t), "") for t in table["token_id"]])
    with atomic_output(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.17g")  # exact: shards use these values


def read_medians(path) -> pd.DataFrame:
    table = pd.read_csv(path, sep="\t", keep_default_na=False, float_precision="round_trip")
    missing = {"token_id", "median"} - set(table.columns)
    if missing:
        raise InputError(path, ", ".join(sorted(missing)), "column missing",
                         "write the file with genecompass.tokenize.write_medians")
    return table


def median_array(medians) -> np.ndarray:
    """Dense float64 array indexed by token id; NaN where a token has no median.

    Accepts a DataFrame with ``token_id`` and ``median``, a mapping
    token id -> median, or an array already indexed by token id.
    """
    if isinstance(medians, pd.DataFrame):
        ids = medians["token_id"].to_numpy(np.int64)
        values = medians["median"].to_numpy(np.float64)
    elif isinstance(medians, Mapping):
        ids = np.fromiter(medians.keys(), dtype=np.int64, count=len(medians))
        values = np.fromiter(medians.values(), dtype=np.float64, count=len(medians))
    else:
        dense = np.asarray(medians, dtype=np.float64).copy()
        dense[~(np.isfinite(dense) & (dense > 0))] = np.nan
        return dense
    if len(ids) and ids.min() < 0:
        raise ValueError("token ids must be non-negative")
    dense = np.full(int(ids.max()) + 1 if len(ids) else 0, np.nan)
    good = np.isfinite(values) & (values > 0)
    dense[ids[good]] = values[good]
    return dense


# --------------------------------------------------------------------------
# Tokenization
# --------------------------------------------------------------------------

@dataclass
class TokenizedChunk:
    """Ranked tokens of a chunk of cells, concatenated cell after cell."""

    lengths: np.ndarray    # int32, per cell
    input_ids: np.ndarray  # int32
    values: np.ndarray     # float32, log1p(normalised / median), non-increasing per cell

    @cached_property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths, dtype=np.int64)])

    def cell(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        start, stop = self.offsets[i], self.offsets[i + 1]
        return self.input_ids[start:stop], self.values[start:stop]


class CellTokenizer:
    """Turns chunks of raw counts (cells x genes of one sample) into ranked tokens.

    The ranking key under ``scheme="paper"`` is value = normalised / token
    median, stored as log1p(value); under ``scheme="released"`` (the authors'
    released preprocessing, which skips the division by the cell total) it is
    value = count / token median, stored as log2(1 + value). A cell keeps its
    ``max_length`` highest values, ties broken by ascending token id (the
    release's unstable argsort leaves ties in no defined order). Genes without
    a token and tokens without a median are dropped.
    """

    def __init__(self, var_names: Sequence[str], gene_to_token: Mapping[str, int], medians,
                 max_length: int = DEFAULT_MAX_LENGTH, target_sum: float = DEFAULT_TARGET_SUM,
                 scheme: str = "paper"):
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        if scheme not in TOKEN_SCHEMES:
            raise ValueError(f"tokenization scheme must be one of {TOKEN_SCHEMES}, got '{scheme}'")
        self.scheme = scheme
        median_by_token = median_array(medians)
        allowed = np.flatnonzero(np.isfinite(median_by_token))
        self.token_map = GeneTokenMap(var_names, gene_to_token, allowed_tokens=allowed)
        self.local_medians = median_by_token[self.token_map.token_ids]
        self.local_token_ids = self.token_map.token_ids.astype(np.int32)
        self.max_length = int(max_length)
        self.target_sum = float(target_sum)

    def __call__(self, counts) -> TokenizedChunk:
        counts = as_csr(counts)
        lengths = np.minimum(self.token_map.token_counts(counts), self.max_length)
        offsets = _offsets(lengths)
        ids = np.empty(offsets[-1], dtype=np.int32)
        values = np.empty(offsets[-1], dtype=np.float64)
        _rank_rows(*_kernel_csr(counts), self.token_map.gene_local, self.local_medians, self.local_token_ids,
                   self.target_sum, self.scheme == "paper", offsets, numba.get_num_threads(), ids, values)
        # log1p by numpy, like the reference (numba's, from libm, can differ in the last bit).
        if self.scheme == "paper":
            log_values = np.empty(len(values), dtype=np.float32)
            np.log1p(values, out=log_values)
        else:   # log2(1 + x) as scanpy's log1p(base=2) computes it
            log_values = (np.log1p(values) / np.log(2)).astype(np.float32)
        return TokenizedChunk(lengths=lengths.astype(np.int32), input_ids=ids, values=log_values)


def gene_token_index(var_names: Sequence[str], gene_to_token: Mapping[str, int]) -> np.ndarray:
    """Token id of each gene column, -1 for genes without a token."""
    return np.array([gene_to_token.get(str(name), -1) for name in var_names], dtype=np.int64)


def tokenize_cell_reference(gene_counts, gene_tokens: np.ndarray, median_by_token: np.ndarray,
                            max_length: int = DEFAULT_MAX_LENGTH,
                            target_sum: float = DEFAULT_TARGET_SUM) -> tuple[np.ndarray, np.ndarray]:
    """Straightforward tokenization of one cell, for tests and benchmarks.

    Dense throughout: the cell's counts over all genes (``gene_counts``) are
    summed into a vector over all token ids (``gene_tokens`` from
    ``gene_token_index``), divided by the cell total and the medians
    (``median_by_token`` from ``median_array``), and the whole vector is
    argsorted. Returns ``(input_ids int32, values float32)`` like
    ``CellTokenizer``.
    """
    gene_counts = np.asarray(gene_counts).ravel()
    total = gene_counts.sum(dtype=np.float64)
    n_token_ids = len(median_by_token)
    mapped = (gene_tokens >= 0) & (gene_tokens < n_token_ids)
    token_counts = np.bincount(gene_tokens[mapped], weights=gene_counts[mapped].astype(np.float64),
                               minlength=n_token_ids)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = token_counts / total * target_sum / median_by_token  # NaN: no median or empty cell
    order = np.argsort(-value, kind="stable")                        # stable: ties by ascending id
    order = order[value[order] > 0][:max_length]
    return order.astype(np.int32), np.log1p(value[order]).astype(np.float32)


# --------------------------------------------------------------------------
# Shards and corpus
# --------------------------------------------------------------------------

def shard_features():
    """The ``datasets.Features`` of a shard (docs/formats.md, "Corpus")."""
    from datasets import Features, Value
    from datasets import Sequence as HFSequence

    return Features({
        "input_ids": HFSequence(Value("int32")),
        "values": HFSequence(Value("float32")),
        "length": Value("int32"),
        "species": Value("string"),
        "sample": Value("string"),
        "cell_id": Value("string"),
    })


class _CountsReader:
    """A QC'd ``.h5ad`` read lazily: CSR chunks of cells and their names.

    Uses anndata's backed sparse dataset for X (only the requested rows are
    read) but, unlike ``read_h5ad(backed="r")``, never loads ``obs``: cell
    names are read chunk by chunk too, so memory does not grow with cells
    (apart from X's row pointers, 8 bytes a cell).
    """

    def __init__(self, path):
        self.path = Path(path)

    def __enter__(self):
        import h5py

        try:
            from anndata.io import read_elem, sparse_dataset
        except ImportError:  # anndata < 0.11
            from anndata.experimental import read_elem, sparse_dataset

        try:
            self.file = h5py.File(self.path, "r")
        except OSError as error:
            raise InputError(self.path, "X", f"cannot open as .h5ad ({error})",
                             "pass a QC output written by genecompass.qc") from error
        try:
            x = self.file["X"]
            if isinstance(x, h5py.Group):
                if x.attrs.get("encoding-type") != "csr_matrix":
                    raise InputError(self.path, "X", f"stored as {x.attrs.get('encoding-type')}",
                                     "write X as a CSR matrix (cells x genes)")
                self.X = sparse_dataset(x)
            else:
                self.X = x  # dense: chunks are read as arrays and made sparse
            self.var_names = read_elem(self.file["var"]).index.astype(str)
            obs = self.file["obs"]
            self.cell_names = obs[obs.attrs["_index"]].asstr()
            self.uns_values = read_elem(self.file["uns"]) if "uns" in self.file else {}
        except KeyError as missing:
            self.file.close()
            raise InputError(self.path, str(missing), "missing from the .h5ad",
                             "pass a QC output written by genecompass.qc") from None
        self.n_cells = int(self.X.shape[0])
        return self

    def __exit__(self, *exc):
        self.file.close()

    def uns(self, key):
        value = self.uns_values.get(key)
        if isinstance(value, np.ndarray):
            value = value.item() if value.size == 1 else None
        return None if value is None else str(value)

    def chunks(self, chunk_size: int, progress: bool, what: str):
        """Yield ``(start, stop, counts CSR)`` for consecutive chunks of cells.

        The next chunk is read in a background thread while the caller works
        on this one (the kernels release the GIL), so at most two are held.
        """
        from tqdm import tqdm

        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")

        def read(start):
            stop = min(start + chunk_size, self.n_cells)
            return start, stop, as_csr(self.X[start:stop])

        with tqdm(total=self.n_cells, unit="cell", file=sys.stderr, disable=not progress,
                  desc=f"{what} {self.path.stem}", mininterval=1.0) as bar, \
                ThreadPoolExecutor(max_workers=1) as background:
            ahead = background.submit(read, 0) if self.n_cells else None
            while ahead is not None:
                start, stop, counts = ahead.result()
                ahead = background.submit(read, stop) if stop < self.n_cells else None
                yield start, stop, counts
                bar.update(stop - start)


def _log_mapping(path, token_map: GeneTokenMap) -> None:
    log.info("%s: %d genes, %d kept, %d without a token, %d whose token has no median",
             path, token_map.n_genes, token_map.n_genes_kept, token_map.n_genes_unmapped,
             token_map.n_genes_without_median)


def chunk_table(chunk: TokenizedChunk, cell_ids, species: str, sample: str):
    """Arrow table of the non-empty cells of a chunk (zero-copy for the lists)."""
    import pyarrow as pa

    keep = chunk.lengths > 0
    lengths = chunk.lengths[keep]
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    if offsets[-1] >= 2 ** 31:
        raise ValueError(f"{offsets[-1]} tokens in one chunk overflow Arrow list offsets: lower chunk_size")
    offsets = offsets.astype(np.int32)
    n = int(keep.sum())
    return pa.table({
        "input_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(chunk.input_ids)),
        "values": pa.ListArray.from_arrays(pa.array(offsets), pa.array(chunk.values)),
        "length": pa.array(lengths, type=pa.int32()),
        "species": pa.array([species] * n, type=pa.string()),
        "sample": pa.array([sample] * n, type=pa.string()),
        "cell_id": pa.array(np.asarray(cell_ids, dtype=object)[keep], type=pa.string()),
    })


def _write_chunk(writer, chunk: TokenizedChunk, cell_ids, species: str, sample: str) -> int:
    """Write the non-empty cells of a chunk; returns how many."""
    table = chunk_table(chunk, cell_ids, species, sample)
    if table.num_rows:
        writer.write_table(table)
    return table.num_rows


def tokenize_sample(h5ad_path, out_path, gene_to_token: Mapping[str, int], medians,
                    species: str | None = None, sample: str | None = None,
                    max_length: int = DEFAULT_MAX_LENGTH, chunk_size: int = DEFAULT_CHUNK_SIZE,
                    progress: bool = True, target_sum: float = DEFAULT_TARGET_SUM, scheme: str = "paper") -> dict:
    """Tokenize one QC'd sample into an Arrow shard (docs/formats.md, "Corpus").

    ``medians``: DataFrame(token_id, median), mapping or dense array (see
    ``median_array``). ``species`` / ``sample`` default to the file's ``uns``.
    Cells left without any token (no counts in genes with a median) are not
    written; they are counted in the returned stats. The shard is written
    under a temporary name and renamed when complete.
    """
    from datasets.arrow_writer import ArrowWriter

    started = time.perf_counter()
    with _CountsReader(h5ad_path) as reader:
        species = species or reader.uns("species")
        sample = sample or reader.uns("sample")
        for field, value in (("species", species), ("sample", sample)):
            if not value:
                raise InputError(h5ad_path, f"uns/{field}", "missing",
                                 f"pass {field}= or write uns['{field}'] in the QC step")
        tokenizer = CellTokenizer(reader.var_names, gene_to_token, medians, max_length, target_sum, scheme)
        _log_mapping(h5ad_path, tokenizer.token_map)
        n_written = n_tokens = n_truncated = 0
        umis = np.zeros(2)   # UMIs of genes with a token, of genes without one
        with atomic_output(out_path) as tmp:
            writer = ArrowWriter(features=shard_features(), path=str(tmp))
            try:
                # Each chunk is written in a background thread while the next
                # is tokenized; one write at a time, in order.
                with ThreadPoolExecutor(max_workers=1) as background:
                    writing = None
                    for start, stop, counts in reader.chunks(chunk_size, progress, "tokenize"):
                        chunk = tokenizer(counts)
                        per_gene = np.asarray(counts.sum(axis=0), dtype=np.float64).ravel()
                        mapped = tokenizer.token_map.mapped
                        umis += [per_gene[mapped].sum(), per_gene[~mapped].sum()]
                        cell_ids = reader.cell_names[start:stop]
                        if writing is not None:
                            n_written += writing.result()
                        writing = background.submit(_write_chunk, writer, chunk, cell_ids, species, sample)
                        n_tokens += int(chunk.lengths.sum(dtype=np.int64))
                        n_truncated += int((chunk.lengths == tokenizer.max_length).sum())
                    if writing is not None:
                        n_written += writing.result()
                writer.finalize()
            finally:
                writer.close()
        n_cells = reader.n_cells

    token_map = tokenizer.token_map
    return {
        "sample": sample,
        "species": species,
        "n_cells": int(n_cells),
        "n_cells_written": int(n_written),
        "n_cells_empty": int(n_cells - n_written),
        "n_tokens": int(n_tokens),
        "mean_length": n_tokens / n_written if n_written else 0.0,
        "n_cells_at_max_length": int(n_truncated),
        "n_genes": token_map.n_genes,
        "n_genes_kept": token_map.n_genes_kept,
        "n_genes_unmapped": token_map.n_genes_unmapped,
        "n_genes_without_median": token_map.n_genes_without_median,
        # genes the dictionary lacks (e.g. a released checkpoint's), and their share of the UMIs
        "umi_share_unmapped": float(umis[1] / umis.sum()) if umis.sum() else 0.0,
        "seconds": round(time.perf_counter() - started, 3),
    }


def build_corpus(shard_paths: Sequence, out_dir, validation_fraction: float = 0.01,
                 seed: int = 0) -> dict:
    """Join shards into a ``DatasetDict`` (train, validation) saved to ``out_dir``.

    Validation cells are a random subset drawn with ``seed``; both splits keep
    the shards' cell order (the trainer shuffles), which keeps the copy
    sequential. Same shards and seed give byte-identical Arrow files.
    """
    from datasets import Dataset, DatasetDict, concatenate_datasets

    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    shard_paths = [Path(p) for p in shard_paths]
    if not shard_paths:
        raise ValueError("build_corpus needs at least one shard")
    shards = [Dataset.from_file(str(p)) for p in shard_paths]
    expected = shard_features()
    for path, shard in zip(shard_paths, shards):
        if shard.features != expected:
            raise InputError(path, "features", f"{shard.features} differ from the shard format",
                             "rebuild the shard with genecompass.tokenize.tokenize_sample")
    corpus = concatenate_datasets(shards)
    n_cells = len(corpus)
    if n_cells == 0:
        raise ValueError(f"all {len(shard_paths)} shards are empty: no cells to build a corpus from")

    n_validation = int(round(n_cells * validation_fraction))
    order = np.random.default_rng(seed).permutation(n_cells)
    validation_idx = np.sort(order[:n_validation])
    train_idx = np.sort(order[n_validation:])
    splits = DatasetDict({
        "train": corpus.select(train_idx, keep_in_memory=True),
        "validation": corpus.select(validation_idx, keep_in_memory=True),
    })
    with atomic_output(out_dir) as tmp:
        splits.save_to_disk(str(tmp))
    return {
        "n_shards": len(shard_paths),
        "n_empty_shards": sum(len(s) == 0 for s in shards),
        "n_cells": n_cells,
        "n_train": len(train_idx),
        "n_validation": len(validation_idx),
        "n_tokens": int(np.sum(corpus.data.column("length").to_numpy(), dtype=np.int64)),
        "seed": int(seed),
        "validation_fraction": float(validation_fraction),
    }
