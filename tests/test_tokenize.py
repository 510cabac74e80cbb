"""Tests of genecompass.tokenize: medians, ranking, shards and corpus."""

from __future__ import annotations

import hashlib
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from genecompass import tokenize as tk

TARGET = 10_000.0


# ---------------------------------------------------------------- helpers

def gene_ids(n: int, offset: int = 0) -> list[str]:
    return [f"ENSG{i + offset:011d}" for i in range(n)]


def random_counts(rng, n_cells, n_genes, density=0.3, max_count=6) -> sp.csr_matrix:
    """Sparse int32 counts with small values (so ties are frequent)."""
    mask = rng.random((n_cells, n_genes)) < density
    values = rng.integers(1, max_count + 1, size=(n_cells, n_genes))
    return sp.csr_matrix(np.where(mask, values, 0).astype(np.int32))


def write_h5ad(path: Path, counts, genes, species="human", sample="s1", cells=None) -> Path:
    counts = sp.csr_matrix(counts, dtype=np.int32)
    cells = cells if cells is not None else [f"{sample}_cell{i}" for i in range(counts.shape[0])]
    adata = anndata.AnnData(X=counts, obs=pd.DataFrame(index=cells), var=pd.DataFrame(index=list(genes)))
    adata.uns["species"] = species
    adata.uns["sample"] = sample
    adata.write_h5ad(path)
    return path


def exact_normalised(counts, genes, gene_to_token):
    """(token ids, normalised values) of all non-zero (cell, token) pairs, computed densely."""
    dense = np.asarray(sp.csr_matrix(counts).todense(), dtype=np.float64)
    tokens = tk.gene_token_index(genes, gene_to_token)
    n_ids = int(tokens.max()) + 1
    token_ids, values = [], []
    for row in dense:
        total = row.sum()
        per_token = np.bincount(tokens[tokens >= 0], weights=row[tokens >= 0], minlength=n_ids)
        nonzero = np.flatnonzero(per_token)
        token_ids.append(nonzero)
        values.append(per_token[nonzero] / total * TARGET)
    return np.concatenate(token_ids), np.concatenate(values)


def assert_same_histogram(a: tk.TokenHistogram, b: tk.TokenHistogram):
    assert a.bins == b.bins
    np.testing.assert_array_equal(a.token_ids, b.token_ids)
    assert (a.counts != b.counts).nnz == 0
    assert a.counts.shape == b.counts.shape


# ---------------------------------------------------------------- medians

def test_medians_agree_with_numpy_median_within_two_percent():
    rng = np.random.default_rng(0)
    samples = {
        0: rng.lognormal(0.0, 1.0, 5000),
        1: rng.lognormal(3.0, 2.5, 4001),
        2: 10 ** rng.uniform(-2.5, 4.5, 999),
        3: rng.exponential(0.5, 2000),
        4: rng.gamma(0.3, 20.0, 777) + 1e-3,
        5: np.array([3.7]),                      # one value
        6: np.array([1.0, 100.0]),               # two values: np.median averages them
        7: np.array([0.02, 0.5, 900.0]),
        8: rng.integers(1, 4, 3000) / 1234.0 * TARGET,   # normalised small counts: heavy ties
        9: np.array([5.0, 5.0, 5.0, 80.0]),
        10: rng.lognormal(1.0, 0.01, 1000),      # all inside a few bins
    }
    token_ids = np.concatenate([np.full(len(v), t) for t, v in samples.items()])
    values = np.concatenate(list(samples.values()))
    shuffle = rng.permutation(len(values))
    hist = tk.TokenHistogram.from_values(token_ids[shuffle], values[shuffle])
    medians = tk.medians_from_histogram(hist).set_index("token_id")
    assert list(medians.index) == sorted(samples)
    for token, vals in samples.items():
        assert medians.loc[token, "n_nonzero"] == len(vals)
        expected = np.median(vals)
        assert abs(medians.loc[token, "median"] - expected) / expected < 0.02, token


def test_bins_are_half_open_intervals_of_log10():
    bins = tk.BinSpec()                                   # 1024 bins over [-3, 5]: 128 per decade
    values = np.array([1e-3, 0.999999, 1.0, 1.0000001, 10 ** (1 / 128) * 1.000001, 99_999.0])
    np.testing.assert_array_equal(bins.index(values), [0, 383, 384, 384, 385, 1023])


def test_values_outside_the_bin_range_fall_in_the_edge_bins():
    hist = tk.TokenHistogram.from_values([5, 5, 6], [1e-9, 1e-9, 1e12])
    dense = hist.counts.toarray()
    assert dense[0, 0] == 2 and dense[1, -1] == 1
    medians = tk.medians_from_histogram(hist)
    assert medians["median"].iloc[0] < 10 ** (-3 + 8 / 1024)
    assert medians["median"].iloc[1] > 10 ** (5 - 8 / 1024)


def test_sample_histogram_counts_every_normalised_value(tmp_path):
    rng = np.random.default_rng(1)
    genes = gene_ids(40)
    gene_to_token = {g: 10 + i for i, g in enumerate(genes[:35])}       # 5 genes unmapped
    gene_to_token[genes[1]] = gene_to_token[genes[0]]                    # two genes -> one token
    counts = random_counts(rng, 57, 40, density=0.4, max_count=30).tolil()
    counts[3, :] = 0                                                     # a cell without counts
    counts = counts.tocsr()
    counts.eliminate_zeros()
    path = write_h5ad(tmp_path / "s.h5ad", counts, genes)

    hist = tk.sample_histogram(path, gene_to_token, chunk_size=10)
    token_ids, values = exact_normalised(counts, genes, gene_to_token)
    assert_same_histogram(hist, tk.TokenHistogram.from_values(token_ids, values))
    assert hist.n_cells == 57
    medians = tk.medians_from_histogram(hist).set_index("token_id")
    for token in np.unique(token_ids):
        expected = np.median(values[token_ids == token])
        assert abs(medians.loc[token, "median"] - expected) / expected < 0.02


def test_released_scheme_histogram_holds_raw_counts_and_shards_report_unmapped_umis(tmp_path):
    rng = np.random.default_rng(3)
    genes = gene_ids(30)
    gene_to_token = {g: 10 + i for i, g in enumerate(genes[:24])}       # 6 genes unmapped
    counts = random_counts(rng, 40, 30, density=0.5, max_count=20).tocsr()
    path = write_h5ad(tmp_path / "s.h5ad", counts, genes)
    hist = tk.sample_histogram(path, gene_to_token, chunk_size=7, scheme="released")
    medians = tk.medians_from_histogram(hist).set_index("token_id")
    dense = counts.toarray()
    for i in range(24):
        raw = dense[:, i][dense[:, i] > 0]
        if len(raw):
            assert abs(medians.loc[10 + i, "median"] - np.median(raw)) / np.median(raw) < 0.02
    stats = tk.tokenize_sample(path, tmp_path / "s.arrow", gene_to_token, tk.medians_from_histogram(hist),
                               species="human", sample="s", progress=False, scheme="released")
    assert stats["n_genes_unmapped"] == 6
    assert stats["umi_share_unmapped"] == pytest.approx(dense[:, 24:].sum() / dense.sum())


def test_histograms_merge_like_concatenated_data_and_survive_save_load(tmp_path):
    rng = np.random.default_rng(2)
    genes = gene_ids(30)
    gene_to_token = {g: 4 + i for i, g in enumerate(genes)}
    a = random_counts(rng, 40, 30, max_count=50)
    b = random_counts(rng, 25, 30, max_count=50)
    path_a = write_h5ad(tmp_path / "a.h5ad", a, genes, sample="a")
    path_b = write_h5ad(tmp_path / "b.h5ad", b, genes, sample="b")
    path_ab = write_h5ad(tmp_path / "ab.h5ad", sp.vstack([a, b]), genes, sample="ab")
    # A third sample with other genes, in another order, some tokens new.
    other_genes = gene_ids(12, offset=25)[::-1]
    other_map = {**gene_to_token, **{g: 100 + i for i, g in enumerate(gene_ids(7, offset=30))}}
    c = random_counts(rng, 15, 12, max_count=50)
    path_c = write_h5ad(tmp_path / "c.h5ad", c, other_genes, sample="c")

    hist_a = tk.sample_histogram(path_a, gene_to_token, chunk_size=7)
    hist_b = tk.sample_histogram(path_b, gene_to_token, chunk_size=100)
    merged = tk.merge_histograms([hist_a, hist_b])
    assert_same_histogram(merged, tk.sample_histogram(path_ab, gene_to_token, chunk_size=13))
    assert merged.n_cells == 65
    in_batches = tk.merge_histograms(iter([hist_a, hist_b]), batch_nnz=10)   # a generator, folded often
    assert_same_histogram(in_batches, merged)
    assert in_batches.n_cells == 65

    hist_c = tk.sample_histogram(path_c, other_map, chunk_size=4)
    ids_ab, values_ab = exact_normalised(sp.vstack([a, b]), genes, gene_to_token)
    ids_c, values_c = exact_normalised(c, other_genes, other_map)
    all_three = tk.merge_histograms([hist_c, merged])
    assert_same_histogram(all_three, tk.TokenHistogram.from_values(
        np.concatenate([ids_ab, ids_c]), np.concatenate([values_ab, values_c])))

    hist_a.save(tmp_path / "a.npz")
    loaded = tk.TokenHistogram.load(tmp_path / "a.npz")
    assert_same_histogram(loaded, hist_a)
    assert loaded.n_cells == hist_a.n_cells
    with np.load(tmp_path / "a.npz", allow_pickle=False) as npz:
        assert {"token_ids", "indptr", "indices", "data", "bins"} <= set(npz.files)
    assert not list(tmp_path.glob(".*tmp*"))


def test_merge_refuses_different_bins():
    one = tk.TokenHistogram.from_values([1], [1.0])
    other = tk.TokenHistogram.from_values([1], [1.0], bins=tk.BinSpec(n_bins=512))
    with pytest.raises(ValueError, match="bins"):
        tk.merge_histograms([one, other])


def test_medians_tsv_round_trip(tmp_path):
    medians = pd.DataFrame({"token_id": [4, 9], "median": [0.5, 12.25], "n_nonzero": [3, 8]})
    tk.write_medians(medians, tmp_path / "m.tsv", {4: "ENSG1", 9: "ENSG2"})
    table = tk.read_medians(tmp_path / "m.tsv")
    assert list(table.columns) == ["token_id", "token", "median", "n_nonzero"]
    assert list(table["token"]) == ["ENSG1", "ENSG2"]
    np.testing.assert_allclose(tk.median_array(table)[[4, 9]], [0.5, 12.25])


# ---------------------------------------------------------------- tokenization

def test_normalise_scales_each_cell_to_the_target_sum():
    counts = sp.csr_matrix(np.array([[1, 0, 3], [0, 0, 0], [2, 2, 0]], dtype=np.int32))
    normalised = tk.normalise(counts, target_sum=100.0)
    np.testing.assert_allclose(normalised.toarray(), [[25, 0, 75], [0, 0, 0], [50, 50, 0]])


def _tokenization_case(seed: int):
    """Random data built to hit ties, near-ties, short and empty cells."""
    rng = np.random.default_rng(seed)
    n_genes = 60
    genes = gene_ids(n_genes)
    token_of_gene = rng.permutation(np.arange(4, 4 + n_genes))          # gene order != token order
    gene_to_token = {g: int(t) for g, t in zip(genes, token_of_gene)}
    for g in genes[:4]:
        del gene_to_token[g]                                             # unmapped genes
    gene_to_token[genes[5]] = gene_to_token[genes[6]]                    # many-to-one
    gene_to_token[genes[7]] = gene_to_token[genes[6]]
    medians = {int(t): 1.0 for t in token_of_gene[:20]}                  # equal medians: exact ties
    near = 1.0 + 1e-9 * rng.random(15)                                    # differ far below float32 resolution
    medians.update({int(t): float(m) for t, m in zip(token_of_gene[20:35], near)})
    medians.update({int(t): float(m) for t, m in zip(token_of_gene[35:55], rng.lognormal(0, 1, 20))})
    # tokens of the last 5 genes have no median: dropped
    counts = random_counts(rng, 90, n_genes, density=0.5, max_count=3)
    counts = counts.tolil()
    counts[10, :] = 0                                  # a cell without counts
    counts[11, :] = 0
    counts[11, :4] = 5                                 # a cell with counts only in unmapped genes
    counts[12, :] = 0
    counts[12, 30] = 2                                 # a cell with one token
    counts = counts.tocsr()
    counts.eliminate_zeros()
    return genes, gene_to_token, medians, counts


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("max_length", [1, 7, 2048])
def test_chunked_tokenization_equals_the_per_cell_reference(seed, max_length):
    genes, gene_to_token, medians, counts = _tokenization_case(seed)
    gene_tokens = tk.gene_token_index(genes, gene_to_token)
    median_by_token = tk.median_array(medians)
    tokenizer = tk.CellTokenizer(genes, gene_to_token, medians, max_length=max_length)
    expected = [tk.tokenize_cell_reference(counts[i].toarray(), gene_tokens, median_by_token, max_length)
                for i in range(counts.shape[0])]
    n_tied = 0
    for chunk_size in (1, 13, 90):
        for start in range(0, counts.shape[0], chunk_size):
            chunk = tokenizer(counts[start:start + chunk_size])
            assert len(chunk.lengths) == min(chunk_size, counts.shape[0] - start)
            for i in range(len(chunk.lengths)):
                ids, values = chunk.cell(i)
                ref_ids, ref_values = expected[start + i]
                np.testing.assert_array_equal(ids, ref_ids)
                np.testing.assert_array_equal(values, ref_values)
                assert ids.dtype == np.int32 and values.dtype == np.float32
                n_tied += int(np.sum(values[1:] == values[:-1]))
    assert n_tied > 0 or max_length == 1               # the case really has ties
    lengths = [len(ids) for ids, _ in expected]
    assert lengths[10] == lengths[11] == 0 and lengths[12] == 1
    assert max(lengths) <= 49                          # tokens with a median and a gene
    if max_length < 20:
        assert max(lengths) == max_length


def test_near_ties_are_ranked_by_exact_value_not_by_token_id():
    genes = gene_ids(4)
    gene_to_token = {g: 10 + i for i, g in enumerate(genes)}
    # Medians decrease with token id by less than float32 can tell, so with
    # equal counts the values grow with token id: the exact order is by
    # descending token id, the opposite of the tie rule.
    medians = {10: 1.0 + 3e-12, 11: 1.0 + 2e-12, 12: 1.0 + 1e-12, 13: 1.0}
    counts = sp.csr_matrix(np.array([[2, 2, 2, 2], [1, 2, 2, 1]], dtype=np.int32))
    chunk = tk.CellTokenizer(genes, gene_to_token, medians)(counts)
    np.testing.assert_array_equal(chunk.cell(0)[0], [13, 12, 11, 10])
    np.testing.assert_array_equal(chunk.cell(1)[0], [12, 11, 13, 10])


def _assert_matches_reference(genes, gene_to_token, medians, counts, max_length):
    gene_tokens = tk.gene_token_index(genes, gene_to_token)
    median_by_token = tk.median_array(medians)
    chunk = tk.CellTokenizer(genes, gene_to_token, medians, max_length=max_length)(counts)
    dense = sp.csr_matrix(counts).toarray()
    for i in range(counts.shape[0]):
        ids, values = tk.tokenize_cell_reference(dense[i], gene_tokens, median_by_token, max_length)
        np.testing.assert_array_equal(chunk.cell(i)[0], ids)
        np.testing.assert_array_equal(chunk.cell(i)[1], values)
    return chunk


@pytest.mark.parametrize("max_length", [10, 75, 2048])
def test_long_runs_of_ties_rank_by_token_id(max_length):
    """Runs of exactly equal values longer than the sort's buckets hold (its
    exact fallback), genes in the opposite order to their tokens, and
    max_length cutting through a run: the smallest token ids are kept."""
    rng = np.random.default_rng(7)
    n = 150
    genes = gene_ids(n)
    gene_to_token = {g: 1000 - i for i, g in enumerate(genes)}          # gene order: descending token
    medians = {1000 - i: 1.0 for i in range(n)}
    counts = np.ones((4, n), dtype=np.int32)
    counts[1, ::3] = 2                                                  # runs of 50 and 100 ties
    counts[2] = rng.integers(1, 4, n)
    counts[3] = rng.integers(0, 3, n)
    chunk = _assert_matches_reference(genes, gene_to_token, medians, sp.csr_matrix(counts), max_length)
    np.testing.assert_array_equal(chunk.cell(0)[0], np.arange(851, 1001)[:max_length])


def test_float_counts_unsorted_int64_indices_and_repeated_genes():
    """Other CSR layouts give the same tokens: float32 counts, int64 indices
    in no particular order within a row, a gene listed twice in a row."""
    genes, gene_to_token, medians, counts = _tokenization_case(6)
    coo = counts.tocoo()
    order = np.random.default_rng(0).permutation(coo.nnz)
    rows, cols, data = coo.row[order], coo.col[order], coo.data[order].astype(np.float32)
    rows, cols = np.append(rows, [0, 0]), np.append(cols, [30, 30])    # gene 30 of cell 0 twice
    data = np.append(data, np.float32([2.0, 3.0]))
    entries = np.argsort(rows, kind="stable")                           # grouped by row, columns shuffled
    indptr = np.searchsorted(rows[entries], np.arange(counts.shape[0] + 1)).astype(np.int64)
    shuffled = sp.csr_matrix((data[entries], cols[entries], indptr), shape=counts.shape)
    shuffled.indices = shuffled.indices.astype(np.int64)               # scipy picks int32 itself
    assert tk.as_csr(shuffled).indices.dtype == np.int64 and not shuffled.has_sorted_indices
    _assert_matches_reference(genes, gene_to_token, medians, shuffled, 2048)


def test_genes_of_one_token_have_their_counts_summed():
    genes = gene_ids(3)
    gene_to_token = {genes[0]: 7, genes[1]: 7, genes[2]: 8}
    counts = sp.csr_matrix(np.array([[3, 4, 1]], dtype=np.int32))
    chunk = tk.CellTokenizer(genes, gene_to_token, {7: 2.0, 8: 1.0})(counts)
    ids, values = chunk.cell(0)
    np.testing.assert_array_equal(ids, [7, 8])
    np.testing.assert_allclose(values, np.log1p([7 / 8 * TARGET / 2.0, 1 / 8 * TARGET]), rtol=1e-6)


# ---------------------------------------------------------------- shards and corpus

def _shard(tmp_path, name, seed, n_cells=70, **kwargs):
    genes, gene_to_token, medians, _ = _tokenization_case(seed)
    rng = np.random.default_rng(seed + 100)
    counts = random_counts(rng, n_cells, len(genes), density=0.4, max_count=9)
    h5ad = write_h5ad(tmp_path / f"{name}.h5ad", counts, genes, species="mouse", sample=name)
    out = tmp_path / "shards" / f"{name}.arrow"
    stats = tk.tokenize_sample(h5ad, out, gene_to_token, pd.DataFrame(
        {"token_id": list(medians), "median": list(medians.values())}), progress=False, **kwargs)
    return out, stats, (genes, gene_to_token, medians, counts)


def test_shard_round_trip_through_dataset_from_file(tmp_path):
    from datasets import Dataset

    out, stats, (genes, gene_to_token, medians, counts) = _shard(tmp_path, "s1", 3, chunk_size=16,
                                                                 max_length=12)
    shard = Dataset.from_file(str(out))
    assert shard.features == tk.shard_features()
    table = shard.data.table
    assert str(table.schema.field("input_ids").type) == "list<item: int32>"
    assert str(table.schema.field("values").type) == "list<item: float>"
    assert len(shard) == stats["n_cells_written"] == stats["n_cells"] - stats["n_cells_empty"]
    assert stats["n_genes_unmapped"] == 4 and stats["n_genes"] == len(genes)

    gene_tokens = tk.gene_token_index(genes, gene_to_token)
    median_by_token = tk.median_array(medians)
    valid_ids = set(np.flatnonzero(np.isfinite(median_by_token)).tolist())
    written = {row["cell_id"]: row for row in shard}
    for i in range(counts.shape[0]):
        ids, values = tk.tokenize_cell_reference(counts[i].toarray(), gene_tokens, median_by_token, 12)
        cell_id = f"s1_cell{i}"
        if len(ids) == 0:
            assert cell_id not in written
            continue
        row = written[cell_id]
        assert row["species"] == "mouse" and row["sample"] == "s1"
        assert row["length"] == len(row["input_ids"]) == len(row["values"]) <= 12
        np.testing.assert_array_equal(row["input_ids"], ids)
        np.testing.assert_array_equal(np.asarray(row["values"], np.float32), values)
        assert np.all(np.diff(row["values"]) <= 0)
        assert set(row["input_ids"]) <= valid_ids
    assert sorted(p.name for p in out.parent.iterdir()) == ["s1.arrow"]   # no temporary left


def test_a_failure_mid_sample_leaves_no_shard(tmp_path, monkeypatch):
    """Chunks are read and written in background threads: an error while
    tokenizing a later chunk still propagates and leaves nothing behind."""
    genes, gene_to_token, medians, counts = _tokenization_case(8)
    h5ad = write_h5ad(tmp_path / "f.h5ad", counts, genes)
    tokenize = tk.CellTokenizer.__call__
    calls = []

    def failing(self, chunk):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return tokenize(self, chunk)

    monkeypatch.setattr(tk.CellTokenizer, "__call__", failing)
    with pytest.raises(RuntimeError, match="boom"):
        tk.tokenize_sample(h5ad, tmp_path / "out" / "f.arrow", gene_to_token, medians, chunk_size=16,
                           progress=False)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_sample_without_mapped_genes_gives_an_empty_loadable_shard(tmp_path):
    from datasets import Dataset

    genes = gene_ids(5)
    h5ad = write_h5ad(tmp_path / "e.h5ad", random_counts(np.random.default_rng(0), 6, 5), genes)
    out = tmp_path / "e.arrow"
    stats = tk.tokenize_sample(h5ad, out, {"ENSG_OTHER": 4}, {4: 1.0}, progress=False)
    shard = Dataset.from_file(str(out))
    assert len(shard) == 0 and shard.features == tk.shard_features()
    assert stats["n_cells_empty"] == 6 and stats["n_genes_unmapped"] == 5


def test_dense_x_gives_the_same_shard_and_missing_species_is_reported(tmp_path):
    from datasets import Dataset

    genes, gene_to_token, medians, counts = _tokenization_case(4)
    sparse_file = write_h5ad(tmp_path / "sparse.h5ad", counts, genes, sample="x")
    dense = anndata.AnnData(X=counts.toarray(), obs=pd.DataFrame(index=[f"x_cell{i}" for i in range(counts.shape[0])]),
                            var=pd.DataFrame(index=genes))
    dense.uns["species"], dense.uns["sample"] = "human", "x"
    dense.write_h5ad(tmp_path / "dense.h5ad")
    for name in ("sparse", "dense"):
        tk.tokenize_sample(tmp_path / f"{name}.h5ad", tmp_path / f"{name}.arrow", gene_to_token, medians,
                           chunk_size=16, progress=False)
    assert Dataset.from_file(str(tmp_path / "sparse.arrow")).to_dict() == \
        Dataset.from_file(str(tmp_path / "dense.arrow")).to_dict()

    del dense.uns["species"]
    dense.write_h5ad(tmp_path / "nospecies.h5ad")
    with pytest.raises(tk.InputError, match="species"):
        tk.tokenize_sample(tmp_path / "nospecies.h5ad", tmp_path / "n.arrow", gene_to_token, medians,
                           progress=False)
    assert not (tmp_path / "n.arrow").exists() and sparse_file.exists()


def _arrow_digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.arrow"))}


def test_corpus_is_reproducible_and_split_by_cell(tmp_path):
    from datasets import Dataset, load_from_disk

    shard_a, stats_a, _ = _shard(tmp_path, "a", 1)
    shard_b, stats_b, _ = _shard(tmp_path, "b", 2, n_cells=45)
    empty = tmp_path / "shards" / "empty.arrow"
    tk.tokenize_sample(write_h5ad(tmp_path / "empty.h5ad", sp.csr_matrix((3, 2), dtype=np.int32),
                                  gene_ids(2), sample="empty"), empty, {}, {4: 1.0}, progress=False)
    shards = [shard_a, empty, shard_b]
    n_cells = stats_a["n_cells_written"] + stats_b["n_cells_written"]

    first = tk.build_corpus(shards, tmp_path / "corpus1", validation_fraction=0.2, seed=7)
    second = tk.build_corpus(shards, tmp_path / "corpus2", validation_fraction=0.2, seed=7)
    tk.build_corpus(shards, tmp_path / "corpus3", validation_fraction=0.2, seed=8)
    assert first == second
    assert first["n_cells"] == n_cells and first["n_empty_shards"] == 1
    assert first["n_validation"] == round(0.2 * n_cells)
    assert first["n_train"] + first["n_validation"] == n_cells

    digests = _arrow_digests(tmp_path / "corpus1")
    assert digests and digests == _arrow_digests(tmp_path / "corpus2")
    assert digests != _arrow_digests(tmp_path / "corpus3")

    corpus = load_from_disk(str(tmp_path / "corpus1"))
    assert set(corpus) == {"train", "validation"}
    train_ids = list(corpus["train"]["cell_id"])
    validation_ids = list(corpus["validation"]["cell_id"])
    assert len(train_ids) == first["n_train"] and len(validation_ids) == first["n_validation"]
    assert not set(train_ids) & set(validation_ids)
    everything = [row["cell_id"] for path in shards for row in Dataset.from_file(str(path))]
    assert sorted(train_ids + validation_ids) == sorted(everything)
    assert corpus["train"].features == tk.shard_features()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["a.arrow", "b.arrow", "empty.arrow"]


def test_corpus_of_only_empty_shards_is_an_error(tmp_path):
    empty = tmp_path / "empty.arrow"
    tk.tokenize_sample(write_h5ad(tmp_path / "e.h5ad", sp.csr_matrix((2, 2), dtype=np.int32), gene_ids(2)),
                       empty, {}, {4: 1.0}, progress=False)
    with pytest.raises(ValueError, match="empty"):
        tk.build_corpus([empty, empty], tmp_path / "corpus", validation_fraction=0.1, seed=0)
    assert not (tmp_path / "corpus").exists()
