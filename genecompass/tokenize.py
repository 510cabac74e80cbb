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
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genecompass.errors import InputError
from genecompass.utils import atomic_output

log = logging.getLogger(__name__)

DEFAULT_TARGET_SUM = 10_000.0
DEFAULT_MAX_LENGTH = 2048
DEFAULT_CHUNK_SIZE = 2048   # cells read from the .h5ad at a time
BLOCK_NNZ = 1 << 19         # non-zeros tokenized at a time (temporaries stay in cache)
HISTOGRAM_FORMAT_VERSION = 1

# Marks of genes in GeneTokenMap.gene_code: >= 0 is the local token of a gene
# that is alone on its token; DROPPED is a gene without a token; a code
# <= SHARED_BASE is a gene that shares its token (local = SHARED_BASE - code).
DROPPED = -1
SHARED_BASE = -2


_MALLOC_TUNED = False


def _keep_freed_memory_in_heap() -> None:
    """Let glibc reuse freed numpy temporaries instead of unmapping them.

    By default glibc hands large freed blocks back to the OS, so every chunk's
    fresh temporaries page-fault again; that alone made tokenization about
    1.7x slower. Blocks up to 64 MiB now come from the heap, which keeps up
    to 128 MiB free. Process-wide, harmless elsewhere, skipped when the user
    set MALLOC_* variables or the C library is not glibc.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED or not sys.platform.startswith("linux"):
        return
    _MALLOC_TUNED = True
    if any(name.startswith("MALLOC_") for name in os.environ) or "GLIBC_TUNABLES" in os.environ:
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 64 << 20)
        libc.mallopt(m_trim_threshold, 128 << 20)
    except (OSError, AttributeError):
        pass


# --------------------------------------------------------------------------
# Normalisation and gene -> token mapping
# --------------------------------------------------------------------------

def normalise(counts, target_sum: float = DEFAULT_TARGET_SUM) -> sp.csr_matrix:
    """Return counts / cell total x ``target_sum`` as a float64 CSR matrix.

    Cells with no counts stay empty. Works on one chunk of cells at a time.
    """
    counts = _as_csr(counts)
    totals = _cell_totals(counts)
    rows = _row_of_entries(counts.indptr)
    with np.errstate(divide="ignore", invalid="ignore"):
        data = counts.data / totals[rows] * target_sum
    out = sp.csr_matrix((data, counts.indices.copy(), counts.indptr.copy()), shape=counts.shape)
    out.eliminate_zeros()
    return out


def _as_csr(matrix) -> sp.csr_matrix:
    if sp.issparse(matrix):
        return sp.csr_matrix(matrix)
    return sp.csr_matrix(np.asarray(matrix))


def _cell_totals(counts: sp.csr_matrix) -> np.ndarray:
    """Per-row sums as float64; exact for integer counts (int64 running sum)."""
    acc_dtype = np.int64 if np.issubdtype(counts.data.dtype, np.integer) else np.float64
    running = np.zeros(counts.nnz + 1, dtype=acc_dtype)
    np.cumsum(counts.data, dtype=acc_dtype, out=running[1:])
    return (running[counts.indptr[1:]] - running[counts.indptr[:-1]]).astype(np.float64)


def _row_of_entries(indptr: np.ndarray) -> np.ndarray:
    n_rows = len(indptr) - 1
    return np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(indptr))


class GeneTokenMap:
    """Where each gene column of a sample goes in token space.

    ``token_ids`` are the sample's tokens ("local" tokens), ascending, so that
    local order equals token-id order. ``allowed_tokens`` (e.g. the tokens
    that have a median) restricts them; genes of other tokens are dropped.
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

        self.token_ids, local = np.unique(global_token[kept], return_inverse=True)
        self.token_ids = self.token_ids.astype(np.int64)
        genes_per_token = np.bincount(local, minlength=len(self.token_ids))
        shared = genes_per_token[local] > 1

        code = np.full(self.n_genes, DROPPED, dtype=np.int32)
        kept_idx = np.flatnonzero(kept)
        code[kept_idx] = np.where(shared, SHARED_BASE - local, local)
        self.gene_code = code
        self.has_shared = bool(shared.any())
        self.n_genes_kept = int(kept.sum())

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    def entries(self, counts: sp.csr_matrix) -> "ChunkEntries":
        """The token-space non-zeros of a chunk of cells (see ``ChunkEntries``)."""
        code = self.gene_code[counts.indices]               # a fresh array: safe to modify
        data = counts.data
        keep = (code != DROPPED) & (data > 0)
        if self.has_shared:
            shared_at = np.flatnonzero((code <= SHARED_BASE) & keep)
            if len(shared_at):
                # Genes sharing a token: the first one in the row carries the
                # sum of their counts, the others are dropped.
                code[shared_at] = SHARED_BASE - code[shared_at]
                row = np.searchsorted(counts.indptr, shared_at, side="right") - 1
                _, first, inverse = np.unique(row * self.n_tokens + code[shared_at],
                                              return_index=True, return_inverse=True)
                data = data.astype(np.float64)
                keep[shared_at] = False
                keep[shared_at[first]] = True
                data[shared_at[first]] = np.bincount(inverse, weights=data[shared_at])
        kept_before = np.concatenate([[0], np.cumsum(keep)])
        row_len = np.diff(kept_before[counts.indptr])
        return ChunkEntries(slot=_offsets_within_rows(row_len), local=code[keep], count=data[keep],
                            row_len=row_len, totals=_cell_totals(counts))


@dataclass
class ChunkEntries:
    """Non-zero (cell, token) pairs of a chunk of cells, grouped row by row.

    Per entry: ``slot`` (its offset within its row), ``local`` (local token)
    and ``count`` (summed over the genes of the token). Per cell:
    ``row_len`` (entries) and ``totals`` (count total over all genes).
    """

    slot: np.ndarray
    local: np.ndarray
    count: np.ndarray
    row_len: np.ndarray
    totals: np.ndarray

    @property
    def rows(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.row_len), dtype=np.int64), self.row_len)

    @property
    def row_start(self) -> np.ndarray:
        return np.cumsum(self.row_len) - self.row_len

    def per_entry(self, per_row: np.ndarray) -> np.ndarray:
        """A per-cell array repeated for each entry of the cell."""
        return np.repeat(per_row, self.row_len)


def _row_blocks(counts: sp.csr_matrix, block_nnz: int):
    """Consecutive row blocks of about ``block_nnz`` non-zeros (views, no copy).

    Working block by block keeps the temporaries small enough for the cache.
    """
    n_rows = counts.shape[0]
    if counts.nnz <= block_nnz:
        yield counts
        return
    bounds = np.searchsorted(counts.indptr, np.arange(0, counts.nnz, block_nnz), side="right") - 1
    bounds = np.unique(np.concatenate([bounds, [0, n_rows]]))
    for start, stop in zip(bounds[:-1], bounds[1:]):
        lo, hi = counts.indptr[start], counts.indptr[stop]
        yield sp.csr_matrix((counts.data[lo:hi], counts.indices[lo:hi], counts.indptr[start:stop + 1] - lo),
                            shape=(stop - start, counts.shape[1]), copy=False)


def _offsets_within_rows(row_len: np.ndarray) -> np.ndarray:
    """0, 1, ... within each row, for entries grouped row after row."""
    starts = np.cumsum(row_len) - row_len
    return np.arange(int(row_len.sum()), dtype=np.int64) - np.repeat(starts, row_len)


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
            position = (np.log10(values) - self.log10_min) / self.width
        return np.clip(np.floor(position), 0, self.n_bins - 1).astype(np.int64)

    def as_array(self) -> np.ndarray:
        return np.array([self.n_bins, self.log10_min, self.log10_max], dtype=np.float64)

    @classmethod
    def from_array(cls, values) -> "BinSpec":
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
    def empty(cls, bins: BinSpec = BinSpec()) -> "TokenHistogram":
        return cls(np.zeros(0, np.int64), sp.csr_matrix((0, bins.n_bins), dtype=np.int64), bins, 0)

    @classmethod
    def from_values(cls, token_ids, values, bins: BinSpec = BinSpec(), n_cells: int = 0) -> "TokenHistogram":
        """Histogram of (token, positive value) pairs given as two flat arrays."""
        token_ids = np.asarray(token_ids, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        tokens, local = np.unique(token_ids, return_inverse=True)
        flat = local * bins.n_bins + bins.index(values)
        dense = np.bincount(flat, minlength=len(tokens) * bins.n_bins).reshape(len(tokens), bins.n_bins)
        return cls._from_dense(tokens, dense, bins, n_cells)

    @classmethod
    def _from_dense(cls, tokens, dense, bins, n_cells) -> "TokenHistogram":
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
    def load(cls, path) -> "TokenHistogram":
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
                     progress: bool = False) -> TokenHistogram:
    """Histogram of log10(normalised non-zero expression) per token of one sample.

    Reads the sample in chunks of ``chunk_size`` cells; memory is
    O(tokens x bins + chunk), independent of the number of cells.
    """
    _keep_freed_memory_in_heap()
    with _CountsReader(h5ad_path) as reader:
        token_map = GeneTokenMap(reader.var_names, gene_to_token)
        _log_mapping(h5ad_path, token_map)
        accumulator = np.zeros(token_map.n_tokens * bins.n_bins, dtype=np.int64)
        for _, _, counts in reader.chunks(chunk_size, progress, "histogram"):
            for block in _row_blocks(counts, BLOCK_NNZ):
                entries = token_map.entries(block)
                normalised = entries.count / entries.per_entry(entries.totals) * target_sum
                flat = entries.local.astype(np.int64) * bins.n_bins + bins.index(normalised)
                np.add.at(accumulator, flat, 1)
        dense = accumulator.reshape(token_map.n_tokens, bins.n_bins)
        return TokenHistogram._from_dense(token_map.token_ids, dense, bins, reader.n_cells)


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
        table.to_csv(tmp, sep="\t", index=False)  # full precision: shards use these exact values


def read_medians(path) -> pd.DataFrame:
    table = pd.read_csv(path, sep="\t", keep_default_na=False)
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

    The ranking key is value = normalised / token median; a cell keeps its
    ``max_length`` highest values, ties broken by ascending token id. Genes
    without a token and tokens without a median are dropped.
    """

    def __init__(self, var_names: Sequence[str], gene_to_token: Mapping[str, int], medians,
                 max_length: int = DEFAULT_MAX_LENGTH, target_sum: float = DEFAULT_TARGET_SUM):
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        median_by_token = median_array(medians)
        allowed = np.flatnonzero(np.isfinite(median_by_token))
        self.token_map = GeneTokenMap(var_names, gene_to_token, allowed_tokens=allowed)
        self.local_medians = median_by_token[self.token_map.token_ids]
        self.local_token_ids = self.token_map.token_ids.astype(np.int32)
        self.max_length = int(max_length)
        self.target_sum = float(target_sum)
        self.block_nnz = BLOCK_NNZ
        _keep_freed_memory_in_heap()

    def __call__(self, counts) -> TokenizedChunk:
        parts = [self._tokenize_block(block) for block in _row_blocks(_as_csr(counts), self.block_nnz)]
        if len(parts) == 1:
            return parts[0]
        return TokenizedChunk(
            lengths=np.concatenate([p.lengths for p in parts]),
            input_ids=np.concatenate([p.input_ids for p in parts]),
            values=np.concatenate([p.values for p in parts]),
        )

    def _tokenize_block(self, counts: sp.csr_matrix) -> TokenizedChunk:
        entries = self.token_map.entries(counts)
        value = (entries.count / entries.per_entry(entries.totals) * self.target_sum
                 / self.local_medians[entries.local])
        out_len, local, value = _rank_within_rows(entries, value, self.max_length, self.token_map.n_tokens)
        return TokenizedChunk(
            lengths=out_len.astype(np.int32),
            input_ids=self.local_token_ids[local],
            values=np.log1p(value).astype(np.float32),
        )


def _rank_within_rows(entries: ChunkEntries, value: np.ndarray, max_length: int, n_local: int,
                      n_width_groups: int = 4):
    """Rank each row's entries by (value descending, local token ascending).

    Returns the number kept per row (at most ``max_length``) and the kept
    entries' local tokens and values, row after row, in rank order.

    Every row is sorted at once as a row of a 2-D grid of uint64 keys
    (value code | local token | slot in the row), padded with the largest
    key; rows of similar length share a grid to limit padding. The value
    code is the float64 bit pattern of the value, inverted and taken
    relative to the chunk's largest value, shifted right to fit: a monotone
    function of the value, so exact ties fall back on the token. Only values
    closer than the dropped bits (typically < 1e-9 relative) could come out
    in the wrong order; the result is checked and such rows re-sorted exactly.
    """
    row_len, slot = entries.row_len, entries.slot
    n_rows = len(row_len)
    out_len = np.minimum(row_len, max_length)
    width = int(row_len.max()) if len(value) else 0
    if width == 0:
        return out_len, entries.local[:0], value[:0]
    slot_bits = max(1, (width - 1).bit_length())
    local_bits = max(1, (n_local - 1).bit_length())
    code_bits = 64 - local_bits - slot_bits
    if code_bits < 24:  # enormous rows or token sets: sort exactly
        return _rank_lexsort(entries, value, max_length)

    # Bit patterns of positive float64 grow with the number.
    relative = np.int64(np.iinfo(np.int64).max) - value.view(np.int64)
    relative -= relative.min()
    relative >>= max(0, int(relative.max()).bit_length() - code_bits)
    keys = relative.view(np.uint64) << np.uint64(local_bits + slot_bits)
    keys |= entries.local.astype(np.uint64) << np.uint64(slot_bits)
    keys |= slot.view(np.uint64)

    # Lay rows out in grids of rows with similar lengths, one after another.
    by_length = np.argsort(row_len, kind="stable")
    row_base = np.empty(n_rows, dtype=np.int64)
    grids, size = [], 0
    for group in np.array_split(by_length, min(n_width_groups, n_rows)):
        group_width = max(1, int(row_len[group].max()))
        row_base[group] = size + np.arange(len(group), dtype=np.int64) * group_width
        grids.append((size, len(group), group_width))
        size += len(group) * group_width
    buffer = np.full(size, np.iinfo(np.uint64).max, dtype=np.uint64)
    address = entries.per_entry(row_base) + slot
    buffer[address] = keys
    for start, n_group_rows, group_width in grids:
        buffer[start:start + n_group_rows * group_width].reshape(n_group_rows, group_width).sort(axis=1)
    # Read back at the same addresses: entry position i (the slot-th of its
    # row) now holds the key of the row's slot-th ranked entry.
    ranked = entries.per_entry(entries.row_start)
    ranked += (buffer[address] & np.uint64((1 << slot_bits) - 1)).view(np.int64)

    ranked_value = value[ranked]
    ranked_local = entries.local[ranked]
    wrong = (slot[1:] != 0) & (                      # slot 0 starts a new row
        (ranked_value[1:] > ranked_value[:-1])
        | ((ranked_value[1:] == ranked_value[:-1]) & (ranked_local[1:] < ranked_local[:-1])))
    if wrong.any():
        # Re-sort the rows holding a misordered pair exactly.
        bad_rows = np.unique(np.searchsorted(np.cumsum(row_len), np.flatnonzero(wrong) + 1, side="right"))
        bad_len = row_len[bad_rows]
        at = np.repeat(entries.row_start[bad_rows], bad_len) + _offsets_within_rows(bad_len)
        members = ranked[at]
        order = np.lexsort((entries.local[members], -value[members], np.repeat(bad_rows, bad_len)))
        ranked[at] = members[order]
        ranked_value[at], ranked_local[at] = value[ranked[at]], entries.local[ranked[at]]

    if width > max_length:
        keep = slot < max_length
        ranked_local, ranked_value = ranked_local[keep], ranked_value[keep]
    return out_len, ranked_local, ranked_value


def _rank_lexsort(entries: ChunkEntries, value: np.ndarray, max_length: int):
    """Exact ranking with one lexsort over the chunk (slow path)."""
    order = np.lexsort((entries.local, -value, entries.rows))
    keep = order[entries.slot < max_length]  # sorted by row first, so slot = offset in row
    return np.minimum(entries.row_len, max_length), entries.local[keep], value[keep]


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
    from datasets import Features, Sequence as HFSequence, Value

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
        """Yield ``(start, stop, counts CSR)`` for consecutive chunks of cells."""
        from tqdm import tqdm

        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        with tqdm(total=self.n_cells, unit="cell", file=sys.stderr, disable=not progress,
                  desc=f"{what} {self.path.stem}", mininterval=1.0) as bar:
            for start in range(0, self.n_cells, chunk_size):
                stop = min(start + chunk_size, self.n_cells)
                yield start, stop, _as_csr(self.X[start:stop])
                bar.update(stop - start)


def _log_mapping(path, token_map: GeneTokenMap) -> None:
    log.info("%s: %d genes, %d kept, %d without a token, %d whose token has no median",
             path, token_map.n_genes, token_map.n_genes_kept, token_map.n_genes_unmapped,
             token_map.n_genes_without_median)


def _chunk_table(chunk: TokenizedChunk, cell_ids, species: str, sample: str):
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


def tokenize_sample(h5ad_path, out_path, gene_to_token: Mapping[str, int], medians,
                    species: str | None = None, sample: str | None = None,
                    max_length: int = DEFAULT_MAX_LENGTH, chunk_size: int = DEFAULT_CHUNK_SIZE,
                    progress: bool = True, target_sum: float = DEFAULT_TARGET_SUM) -> dict:
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
        tokenizer = CellTokenizer(reader.var_names, gene_to_token, medians, max_length, target_sum)
        _log_mapping(h5ad_path, tokenizer.token_map)
        n_written = n_tokens = n_truncated = 0
        with atomic_output(out_path) as tmp:
            writer = ArrowWriter(features=shard_features(), path=str(tmp))
            try:
                for start, stop, counts in reader.chunks(chunk_size, progress, "tokenize"):
                    chunk = tokenizer(counts)
                    table = _chunk_table(chunk, reader.cell_names[start:stop], species, sample)
                    if table.num_rows:
                        writer.write_table(table)
                    n_written += table.num_rows
                    n_tokens += int(chunk.lengths.sum(dtype=np.int64))
                    n_truncated += int((chunk.lengths == tokenizer.max_length).sum())
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
