"""QC filters, each on a crafted matrix, and the raw-count check."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from genecompass.errors import InputError
from genecompass.qc import QCParams, check_raw_counts, qc_filter, summarize_filters

# 300 genes: 0-9 mitochondrial protein coding, 10-209 protein coding,
# 210-239 miRNA, 240-269 lncRNA, 270-299 pseudogenes (not core).
N_GENES = 300
MITO = np.arange(0, 10)
CODING = np.arange(10, 210)
MIRNA = np.arange(210, 240)
LNCRNA = np.arange(240, 270)
PSEUDO = np.arange(270, 300)


def make_var():
    biotype = np.array(["protein_coding"] * 210 + ["miRNA"] * 30 + ["lncRNA"] * 30
                       + ["processed_pseudogene"] * 30)
    symbols = [f"MT-G{i}" for i in MITO] + [f"G{i}" for i in range(10, N_GENES)]
    return pd.DataFrame({"symbol": symbols, "biotype": biotype},
                        index=[f"ENSG{i:011d}" for i in range(N_GENES)])


def cell(genes, counts=5, mito_counts=0):
    row = np.zeros(N_GENES, dtype=np.int32)
    row[genes] = counts
    if mito_counts:
        row[MITO] = mito_counts
    return row


def make_adata(rows, names=None):
    X = sp.csr_matrix(np.vstack(rows))
    obs = pd.DataFrame(index=names or [f"cell{i}" for i in range(len(rows))])
    return ad.AnnData(X=X, obs=obs, var=make_var())


def good_cell(rng, n=230):
    """A healthy cell: n genes spread over coding, miRNA and lncRNA, 1 mito gene."""
    pool = np.concatenate([CODING, MIRNA, LNCRNA])
    genes = rng.choice(pool, size=n - 1, replace=False)
    return cell(np.append(genes, MITO[0]), counts=4)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_min_genes_removes_cells_below_threshold(rng):
    rows = [good_cell(rng, 230) for _ in range(6)] + [good_cell(rng, 150)]
    result = qc_filter(make_adata(rows), QCParams())
    removed = result.filters.set_index("filter")["cells_removed"]
    assert removed["min_genes"] == 1
    assert result.adata.n_obs == 6
    assert "cell6" not in result.adata.obs_names


def test_min_coding_genes_needs_more_than_seven(rng):
    params = QCParams(min_genes=0, max_gene_sd=100)
    # Cells made only of lncRNA + pseudogenes except for k coding genes.
    base = np.concatenate([LNCRNA, PSEUDO])
    rows = [good_cell(rng) for _ in range(5)]
    rows.append(cell(np.concatenate([base, CODING[:7]])))   # 7 coding: removed
    rows.append(cell(np.concatenate([base, CODING[:8]])))   # 8 coding: kept
    rows.append(cell(np.concatenate([base, MIRNA[:8]])))    # 8 miRNA: kept
    result = qc_filter(make_adata(rows), params)
    assert result.filters.set_index("filter").loc["min_coding_genes", "cells_removed"] == 1
    assert "cell5" not in result.adata.obs_names
    assert {"cell6", "cell7"} <= set(result.adata.obs_names)


def test_mito_fraction_above_threshold_is_removed(rng):
    rows = [good_cell(rng) for _ in range(5)]
    pool = np.concatenate([CODING, MIRNA])
    genes = rng.choice(pool, 220, replace=False)
    total_other = 220 * 4
    # mito counts spread over 10 genes: fraction = 10 m / (10 m + 880)
    just_below = cell(genes, 4, mito_counts=15)   # 150 / 1030 = 0.1456
    just_above = cell(genes, 4, mito_counts=16)   # 160 / 1040 = 0.1538
    assert 150 / (150 + total_other) < 0.15 < 160 / (160 + total_other)
    result = qc_filter(make_adata(rows + [just_below, just_above]), QCParams())
    kept = set(result.adata.obs_names)
    assert "cell5" in kept and "cell6" not in kept
    assert result.filters.set_index("filter").loc["max_mito_fraction", "cells_removed"] == 1
    assert np.all(result.adata.obs["mito_fraction"] <= 0.15)


def test_gene_number_outliers_beyond_three_sd(rng):
    params = QCParams(min_genes=0)
    pool = np.concatenate([CODING, MIRNA, LNCRNA])
    rows = [cell(rng.choice(pool, 100 + (i % 3), replace=False)) for i in range(30)]
    rows.append(cell(rng.choice(pool, 250, replace=False)))  # far beyond 3 SD
    result = qc_filter(make_adata(rows), params)
    assert result.filters.set_index("filter").loc["gene_number_sd", "cells_removed"] == 1
    assert "cell30" not in result.adata.obs_names
    # Reference: the same rule computed directly.
    n = np.array([100 + (i % 3) for i in range(30)] + [250], dtype=float)
    assert abs(250 - n.mean()) > 3 * n.std()


def test_small_sample_errors_or_drops(rng):
    rows = [good_cell(rng) for _ in range(3)]
    with pytest.raises(InputError, match="min_cells"):
        qc_filter(make_adata(rows), QCParams(), path="tiny.h5ad")
    result = qc_filter(make_adata(rows), QCParams(small_sample="drop"))
    assert result.dropped and result.adata.n_obs == 0


def test_only_core_genes_are_kept_and_counts_stay_raw(rng):
    rows = [good_cell(rng) + cell(PSEUDO[:3], 2) for _ in range(6)]
    adata = make_adata(rows)
    result = qc_filter(adata, QCParams())
    out = result.adata
    assert set(out.var["biotype"]) == {"protein_coding", "miRNA", "lncRNA"}
    assert out.n_vars == N_GENES - len(PSEUDO)
    assert out.X.dtype == np.int32 and sp.issparse(out.X) and out.X.format == "csr"
    dense_in = adata.X.toarray()[:, :270]
    assert np.array_equal(out.X.toarray(), dense_in)
    # Gene numbers are computed before the core-gene filter (pseudogenes count).
    assert (out.obs["n_genes"] == 233).all()


@pytest.mark.parametrize("values, problem", [
    (np.array([[1.5, 2.0], [0.0, 3.0]]), "non-integer"),
    (np.log1p(np.array([[3.0, 2.0], [0.0, 7.0]])), "log-normalised"),
])
def test_non_raw_input_is_refused_unless_overridden(values, problem):
    with pytest.raises(InputError, match=problem) as error:
        check_raw_counts(sp.csr_matrix(values), "norm.h5ad")
    assert "norm.h5ad" in str(error.value) and "allow_non_raw" in str(error.value)
    check_raw_counts(sp.csr_matrix(values), "norm.h5ad", allow_non_raw=True)


def test_negative_values_are_refused_even_with_override():
    with pytest.raises(InputError, match="negative"):
        check_raw_counts(sp.csr_matrix(np.array([[1, -2]])), "neg.h5ad", allow_non_raw=True)


def test_integer_valued_floats_are_accepted():
    check_raw_counts(sp.csr_matrix(np.array([[1.0, 0.0, 4.0]], dtype=np.float32)), "f.h5ad")


def test_params_reject_unknown_keys():
    with pytest.raises(ValueError, match="min_gene"):
        QCParams.from_dict({"min_gene": 3})


def test_summary_table_has_one_row_per_sample(tmp_path, rng):
    paths = []
    for name, n_bad in (("a", 1), ("b", 2)):
        rows = [good_cell(rng) for _ in range(5)] + [good_cell(rng, 100) for _ in range(n_bad)]
        result = qc_filter(make_adata(rows), QCParams())
        path = tmp_path / f"{name}.filters.tsv"
        result.filters.assign(sample=name).to_csv(path, sep="\t", index=False)
        paths.append(path)
    summary = summarize_filters(paths, tmp_path / "summary.tsv")
    assert summary["sample"].tolist() == ["a", "b"]
    assert summary["removed_min_genes"].tolist() == [1, 2]
    assert summary["cells_kept"].tolist() == [5, 5]
    assert summary["cells_input"].tolist() == [6, 7]
