"""Tests of the CAME task glue (genecompass.tasks.came.run)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from genecompass.errors import InputError
from genecompass.tasks.came.run import (
    gene_vectors,
    homology_from_dictionary,
    join_samples,
)

DICTIONARY = pd.DataFrame({
    "token_id": [0, 4, 5, 6], "token": ["<pad>", "ENSG1", "ENSG2", "ENSMUSG9"],
    "token_class": ["special", "homologous", "human_only", "mouse_only"],
    "human_ensembl_id": ["", "ENSG1", "ENSG2", ""], "mouse_ensembl_id": ["", "ENSMUSG1", "", "ENSMUSG9"],
    "human_symbol": ["", "A", "B", ""], "mouse_symbol": ["", "a", "", "z"]})


def test_homology_pairs_come_from_homologous_tokens():
    pairs = homology_from_dictionary(DICTIONARY, "mouse", "human")
    assert pairs.values.tolist() == [["ENSMUSG1", "ENSG1"]]
    with pytest.raises(ValueError, match="both human"):
        homology_from_dictionary(DICTIONARY, "human", "human")


def test_gene_vectors_prefer_contextual_and_fall_back_to_static():
    contextual = pd.DataFrame({"species": ["human", "mouse"], "ensembl_id": ["ENSG1", "ENSMUSG1"],
                               "dim_0": [1.0, 2.0], "dim_1": [1.0, 2.0]})
    static = pd.DataFrame({"human_ensembl_id": ["ENSG1", "ENSG2", ""], "mouse_ensembl_id": ["ENSMUSG1", "", "ENSMUSG9"],
                           "dim_0": [9.0, 3.0, 4.0], "dim_1": [9.0, 3.0, 4.0]})
    vectors = gene_vectors(contextual, static, standardise=False)
    assert sorted(vectors.index) == ["ENSG1", "ENSG2", "ENSMUSG1", "ENSMUSG9"]
    assert vectors.loc["ENSG1", "dim_0"] == 1.0      # contextual wins
    assert vectors.loc["ENSMUSG1", "dim_0"] == 2.0
    assert vectors.loc["ENSG2", "dim_0"] == 3.0      # static fallback
    assert vectors.loc["ENSMUSG9", "dim_0"] == 4.0
    standard = gene_vectors(contextual, static)
    assert np.allclose(standard.mean(axis=0), 0) and np.allclose(standard.std(axis=0), 1)
    assert standard["dim_0"].rank().equals(vectors.loc[standard.index, "dim_0"].rank())


def sample(n: int, seed: int, labelled: bool = True) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    adata = ad.AnnData(sparse.csr_matrix(rng.poisson(2.0, size=(n, 5)).astype(np.int32)),
                       obs=pd.DataFrame(index=[f"c{i}" for i in range(n)]),
                       var=pd.DataFrame(index=[f"g{i}" for i in range(5)]))
    if labelled:
        adata.obs["cell_type"] = ["x", "y"] * (n // 2)
    return adata


def test_join_samples_normalises_and_checks_labels():
    joined = join_samples({"s1": sample(4, 0), "s2": sample(6, 1)}, "cell_type", "reference")
    assert joined.n_obs == 10 and set(joined.obs["sample"]) == {"s1", "s2"}
    totals = np.expm1(joined.X.toarray()).sum(axis=1)
    assert np.allclose(totals, 1e4, rtol=1e-4)
    with pytest.raises(InputError, match=r"s2: field 'obs\['cell_type'\]'"):
        join_samples({"s1": sample(4, 0), "s2": sample(4, 1, labelled=False)}, "cell_type", "reference")
