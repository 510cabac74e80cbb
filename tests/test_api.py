"""The AnnData API computes what the workflow's file-based tokenize and embed steps compute."""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from datasets import Dataset

from genecompass import api
from genecompass import tokenize as tk
from genecompass.embed import embed_dataset
from genecompass.errors import InputError
from genecompass.model import GeneCompassConfig, GeneCompassModel

GENES = [f"ENSG{i:011d}" for i in range(30)]


def counts_adata(seed=0, n_cells=25):
    rng = np.random.default_rng(seed)
    counts = np.where(rng.random((n_cells, len(GENES))) < 0.4, rng.integers(1, 20, (n_cells, len(GENES))), 0)
    counts[3] = 0                                            # a cell without counts
    adata = anndata.AnnData(X=sp.csr_matrix(counts.astype(np.float32)),
                            obs=pd.DataFrame(index=[f"cell{i}" for i in range(n_cells)]),
                            var=pd.DataFrame(index=GENES))
    adata.uns.update(species="human", sample="s1")
    return adata


def vocabulary():
    gene_to_token = {g: 4 + i for i, g in enumerate(GENES[:26])}     # 4 genes without a token
    medians = pd.DataFrame({"token_id": list(gene_to_token.values()),
                            "median": np.linspace(0.5, 3, len(gene_to_token))})
    return gene_to_token, medians


@pytest.mark.parametrize("scheme", ["paper", "released"])
def test_tokenize_and_embed_anndata_match_the_file_based_steps(tmp_path, scheme):
    adata = counts_adata()
    gene_to_token, medians = vocabulary()
    tokens = api.tokenize_anndata(adata, gene_to_token, medians, "human", scheme=scheme, chunk_size=7,
                                  sample="s1")
    adata.write_h5ad(tmp_path / "s1.h5ad")
    tk.tokenize_sample(tmp_path / "s1.h5ad", tmp_path / "s1.arrow", gene_to_token, medians, progress=False,
                       scheme=scheme)
    shard = Dataset.from_file(str(tmp_path / "s1.arrow"))
    assert tokens.features == shard.features
    assert tokens.to_dict() == shard.to_dict()
    assert len(tokens) == adata.n_obs - 1 and "cell3" not in tokens["cell_id"]

    torch.manual_seed(0)
    model = GeneCompassModel(GeneCompassConfig.preset("tiny", vocab_size=30, knowledge_kinds=[],
                                                      max_position_embeddings=40)).eval()
    genes = api.embed_anndata(adata, model, tokens)
    expected = embed_dataset(model, shard, progress=False)
    cells = adata.obsm[api.EMBEDDING_KEY]
    assert cells.shape == (adata.n_obs, 32) and np.isnan(cells[3]).all()
    rows = [adata.obs_names.get_loc(c) for c in expected.cell_ids]
    np.testing.assert_allclose(cells[rows], expected.cell_embeddings, rtol=1e-6, atol=1e-6)
    seen = np.flatnonzero(expected.gene_counts)
    assert genes["token_id"].tolist() == seen.tolist()
    np.testing.assert_allclose(genes.iloc[:, 2:].to_numpy(),
                               expected.gene_sums[seen] / expected.gene_counts[seen, None], rtol=1e-5)


def test_counts_from_a_layer_or_raw_and_normalised_x_refused():
    adata = counts_adata(1)
    gene_to_token, medians = vocabulary()
    expected = api.tokenize_anndata(adata, gene_to_token, medians, "human")
    normalised = adata.copy()
    normalised.layers["counts"] = normalised.X.copy()
    normalised.raw = normalised
    normalised.X = sp.csr_matrix(np.log1p(normalised.X.toarray() / 7.0))
    with pytest.raises(InputError, match="non-integer.*'raw', 'layers/counts'"):
        api.tokenize_anndata(normalised, gene_to_token, medians, "human")
    for source in ("layers/counts", "raw"):
        got = api.tokenize_anndata(normalised, gene_to_token, medians, "human", counts=source)
        assert got.to_dict() == expected.to_dict()
    with pytest.raises(InputError, match="no layer 'spliced'"):
        api.tokenize_anndata(normalised, gene_to_token, medians, "human", counts="layers/spliced")
    symbols = adata.copy()
    symbols.var_names = [f"GENE{i}" for i in range(len(GENES))]
    with pytest.raises(InputError, match="Ensembl ID"):
        api.tokenize_anndata(symbols, gene_to_token, medians, "human")
