"""Tests of embedding extraction (genecompass.embed) and the homology analysis (genecompass.embedding_analysis)."""

from __future__ import annotations

import datasets
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import random_knowledge

from genecompass.embed import embed_dataset, load_encoder, mean_pairwise_cosine, static_gene_embeddings
from genecompass.embedding_analysis import cross_species_similarity, summarize
from genecompass.embedding_files import (
    attach_cell_embeddings,
    contextual_gene_table,
    load_sample_embeddings,
    pool_by_species,
    save_sample_embeddings,
    select_gene_cells,
)
from genecompass.model import GeneCompassConfig, GeneCompassForPretraining, GeneCompassModel

VOCAB = 30
KDIM = 8


@pytest.fixture(scope="module")
def model() -> GeneCompassModel:
    torch.manual_seed(0)
    config = GeneCompassConfig.preset("tiny", vocab_size=VOCAB, max_position_embeddings=17, knowledge_dim=KDIM)
    full = GeneCompassForPretraining(config)
    full.set_knowledge(random_knowledge(VOCAB, KDIM))
    return full.genecompass.eval()


def cells(n: int = 9, seed: int = 0) -> datasets.Dataset:
    rng = np.random.default_rng(seed)
    rows = {"input_ids": [], "values": [], "length": [], "species": [], "cell_id": []}
    for i in range(n):
        length = int(rng.integers(2, 12))
        rows["input_ids"].append(rng.choice(np.arange(4, VOCAB), size=length, replace=False).tolist())
        rows["values"].append(np.sort(rng.uniform(0.2, 3, size=length))[::-1].tolist())
        rows["length"].append(length)
        rows["species"].append("human" if i % 3 else "mouse")
        rows["cell_id"].append(f"c{i}")
    return datasets.Dataset.from_dict(rows)


def one_cell_output(model, row) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([row["input_ids"]]), values=torch.tensor([row["values"]]),
                     species_ids=torch.tensor([model.config.species_token_ids[row["species"]]])).last_hidden_state[0]


def test_mean_pairwise_cosine_matches_brute_force():
    rng = np.random.default_rng(1)
    vectors = torch.tensor(rng.normal(size=(2, 5, 4)), dtype=torch.float32)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    got = mean_pairwise_cosine(vectors, mask)
    unit = torch.nn.functional.normalize(vectors[0, :3], dim=-1)
    sims = unit @ unit.T
    expected = (sims.sum() - sims.diagonal().sum()) / 6
    assert torch.isclose(got[0], expected, atol=1e-5)
    assert torch.isnan(got[1])  # one gene: no pair


def test_embed_dataset_matches_cell_by_cell_and_groups_by_gene(model):
    data = cells()
    selected = np.array([True] * 6 + [False] * 3)
    result = embed_dataset(model, data, batch_size=4, gene_cells=selected, progress=False)
    assert result.cell_ids == [f"c{i}" for i in range(9)]
    sums = np.zeros((VOCAB, model.config.hidden_size))
    counts = np.zeros(VOCAB, dtype=int)
    for i, row in enumerate(data):
        out = one_cell_output(model, row)
        # padding in a batch must not change a cell's outputs
        np.testing.assert_allclose(result.cell_embeddings[i], out[0].numpy(), atol=1e-4)
        if selected[i]:
            for position, token in enumerate(row["input_ids"]):
                sums[token] += out[1 + position].numpy()
                counts[token] += 1
    np.testing.assert_array_equal(result.gene_counts, counts)
    np.testing.assert_allclose(result.gene_sums, sums, atol=1e-3)
    assert np.isfinite(result.within_cell_cosine).all()
    assert (np.abs(result.within_cell_cosine) <= 1).all()


def test_max_length_cuts_cells(model):
    data = cells()
    result = embed_dataset(model, data, batch_size=3, max_length=2, progress=False)
    assert result.gene_counts.sum() == 2 * len(data)


def test_static_embedding_depends_on_gene_only(model):
    a = static_gene_embeddings(model, [5, 6, 5])
    assert np.allclose(a[0], a[2]) and not np.allclose(a[0], a[1])
    # equals the input encoding of the gene in a cell, minus the position term, at value 1
    emb = model.embeddings
    ids = torch.tensor([5])
    with torch.no_grad():
        expected = emb.LayerNorm(emb.gene_encoding(ids, torch.ones(1)))
    np.testing.assert_allclose(a[0], expected[0].numpy(), atol=1e-6)


def test_sample_file_round_trip_and_pooling(model, tmp_path):
    data = cells()
    result = embed_dataset(model, data, batch_size=4, progress=False)
    path = tmp_path / "s.npz"
    save_sample_embeddings(result, path, "human")
    loaded, species = load_sample_embeddings(path)
    assert species == "human" and loaded.cell_ids == result.cell_ids
    np.testing.assert_array_equal(loaded.gene_counts, result.gene_counts)
    np.testing.assert_allclose(loaded.gene_sums, result.gene_sums)
    pooled = pool_by_species([(loaded, "human"), (loaded, "human"), (loaded, "mouse")])
    np.testing.assert_array_equal(pooled["human"][1], 2 * result.gene_counts)
    np.testing.assert_array_equal(pooled["mouse"][1], result.gene_counts)


def test_contextual_table_uses_each_species_ids():
    dictionary = pd.DataFrame({
        "token_id": [0, 1, 2, 3, 4, 5], "token": ["<pad>", "<mask>", "<human>", "<mouse>", "ENSG1", "ENSMUSG9"],
        "token_class": ["special"] * 4 + ["homologous", "mouse_only"],
        "human_ensembl_id": ["", "", "", "", "ENSG1", ""], "mouse_ensembl_id": ["", "", "", "", "ENSMUSG1", "ENSMUSG9"],
        "human_symbol": ["", "", "", "", "A", ""], "mouse_symbol": ["", "", "", "", "a", "z"]})
    sums = np.zeros((6, 2))
    sums[4] = [2.0, 4.0]
    sums[5] = [3.0, 3.0]
    table = contextual_gene_table({"human": (sums * [1, 1], np.array([0, 0, 0, 0, 2, 0])),
                                   "mouse": (sums, np.array([0, 0, 0, 0, 1, 3]))}, dictionary)
    human = table[table["species"] == "human"].set_index("token_id")
    mouse = table[table["species"] == "mouse"].set_index("token_id")
    assert list(human.index) == [4] and human.loc[4, "ensembl_id"] == "ENSG1"
    assert list(human.loc[4, ["dim_0", "dim_1"]]) == [1.0, 2.0]  # mean over the 2 cells
    assert mouse.loc[4, "ensembl_id"] == "ENSMUSG1" and mouse.loc[4, "symbol"] == "a"
    assert list(mouse.loc[5, ["dim_0", "dim_1"]]) == [1.0, 1.0]


def test_select_gene_cells():
    obs = pd.DataFrame({"cell_type": ["B", "T", "B", "B"]}, index=["a", "b", "c", "d"])
    chosen = select_gene_cells(obs, ["d", "c", "b", "a"], "cell_type", "B")
    assert chosen.tolist() == [True, True, False, True]
    capped = select_gene_cells(obs, ["d", "c", "b", "a"], "cell_type", "B", max_cells=2, seed=1)
    assert capped.sum() == 2 and not capped[2]
    with pytest.raises(ValueError, match="obs_column 'donor'"):
        select_gene_cells(obs, ["a"], "donor", "x")


def planted_table(n_tokens: int, homolog_noise: float, seed: int = 0):
    """Human and mouse vectors per homologous token; mouse = human + noise."""
    rng = np.random.default_rng(seed)
    human = rng.normal(size=(n_tokens, 16))
    mouse = human + homolog_noise * rng.normal(size=human.shape)
    keys = pd.DataFrame({"species": ["human"] * n_tokens + ["mouse"] * n_tokens,
                         "token_id": np.tile(np.arange(10, 10 + n_tokens), 2), "token_class": "homologous"})
    return keys, np.vstack([human, mouse])


def test_cross_species_similarity_separates_planted_homologs():
    keys, vectors = planted_table(80, homolog_noise=0.5)
    pairs = cross_species_similarity(keys, vectors, n_non_homologous=500, seed=3)
    homolog = pairs[pairs["kind"] == "homologous"]
    non = pairs[pairs["kind"] == "non_homologous"]
    assert len(homolog) == 80 and len(non) == 500
    assert (non["human_token"] != non["mouse_token"]).all()
    assert homolog["cosine"].mean() > 0.7 and abs(non["cosine"].mean()) < 0.1
    summary = summarize({"m": pairs}, {"m": {"human": np.array([0.1, 0.2, np.nan])}}).set_index("comparison")
    assert summary.loc["homologous", "auroc_vs_non_homologous"] > 0.95
    assert summary.loc["homologous", "p_greater_than_non_homologous"] < 1e-6
    assert summary.loc["within_cell_human", "n"] == 2


def test_cross_species_similarity_without_signal_is_chance():
    keys, vectors = planted_table(80, homolog_noise=0.0)
    vectors[80:] = np.random.default_rng(9).normal(size=(80, 16))  # mouse vectors unrelated
    pairs = cross_species_similarity(keys, vectors, n_non_homologous=500, seed=3)
    auroc = summarize({"m": pairs}, {}).set_index("comparison").loc["homologous", "auroc_vs_non_homologous"]
    assert 0.35 < auroc < 0.65


def test_cross_species_similarity_needs_shared_tokens():
    keys = pd.DataFrame({"species": ["human", "mouse"], "token_id": [10, 11], "token_class": "homologous"})
    with pytest.raises(ValueError, match="in both species"):
        cross_species_similarity(keys, np.ones((2, 3)))


def test_load_encoder_reads_a_pretraining_checkpoint(model, tmp_path):
    full = GeneCompassForPretraining(model.config)
    full.genecompass.load_state_dict(model.state_dict())
    full.save_pretrained(tmp_path / "m")
    encoder = load_encoder(tmp_path / "m", "cpu")
    row = cells(1)[0]
    assert torch.allclose(one_cell_output(encoder, row), one_cell_output(model, row), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        load_encoder(tmp_path / "missing")


def test_attach_cell_embeddings_matches_by_cell_id(model):
    import anndata as ad

    data = cells()
    result = embed_dataset(model, data, batch_size=4, progress=False)
    order = ["c3", "c0", "c8"]
    adata = ad.AnnData(np.zeros((3, 2), dtype=np.float32), obs=pd.DataFrame(index=order))
    attach_cell_embeddings(adata, result)
    np.testing.assert_array_equal(adata.obsm["X_genecompass"], result.cell_embeddings[[3, 0, 8]])
    assert np.allclose(adata.obs["genecompass_within_cell_cosine"], result.within_cell_cosine[[3, 0, 8]])
    stranger = ad.AnnData(np.zeros((1, 2), dtype=np.float32), obs=pd.DataFrame(index=["zz"]))
    with pytest.raises(ValueError, match="no embedding for 1 of 1 cells"):
        attach_cell_embeddings(stranger, result, source="s.npz")
