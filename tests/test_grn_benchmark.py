"""The GRN task layer: dataset export, truth/TF readers, symbol keys, the prior sweep, UGRN pairs and table."""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import pytest
from conftest import tiny_pretraining_model
from scipy import sparse

from genecompass.embedding_files import symbol_vectors
from genecompass.errors import InputError
from genecompass.tasks.grn import benchmark as task


def test_read_truth_network_accepts_beeline_and_source_target_tables(tmp_path):
    beeline_csv = tmp_path / "STRING-network.csv"
    beeline_csv.write_text("Gene1,Gene2\nSox2,Nanog\nSox2,Nanog\nPou5f1,Sox2\n")
    network = task.read_truth_network(beeline_csv)
    assert network.values.tolist() == [["SOX2", "NANOG"], ["POU5F1", "SOX2"]]  # upper-cased, deduplicated
    table = tmp_path / "grn.tsv"
    table.write_text("source\ttarget\tmode\nA\tb\tActivation\n")
    assert task.read_truth_network(table).values.tolist() == [["A", "B"]]
    bad = tmp_path / "bad.csv"
    bad.write_text("from,to\nA,B\n")
    with pytest.raises(InputError, match="Gene1/Gene2 nor source/target"):
        task.read_truth_network(bad)


def test_read_tfs_column_and_errors(tmp_path):
    path = tmp_path / "tfs.tsv"
    path.write_text("tf_index\thuman_symbol\tmouse_symbol\n0\tXKN\tXkn\n1\tBHB12\tBhb12\n2\tXKN\tXkn\n")
    assert task.read_tfs(path, "mouse_symbol") == ["XKN", "BHB12"]
    with pytest.raises(InputError, match="tf_column"):
        task.read_tfs(path, "TF")


def _counts(rng, n_cells=60):
    genes = ["TFA", "TFB", "G1", "G2", "G3", "G4", "RARE"]
    x = rng.poisson(5.0, size=(n_cells, len(genes))).astype(np.int32)
    x[:, 2] = rng.poisson(np.where(np.arange(n_cells) < 30, 1, 40))   # G1: the most variable gene
    x[:, 6] = 0
    x[0, 6] = 3                                                        # RARE: in 1 of 60 cells
    adata = anndata.AnnData(X=sparse.csr_matrix(x), var=pd.DataFrame({"symbol": [g.lower() for g in genes]},
                                                                      index=[f"ID{i}" for i in range(len(genes))]))
    adata.obs_names = [f"c{i}" for i in range(n_cells)]
    return adata, x


def test_export_expression_keeps_detected_tfs_and_top_variable_genes():
    adata, x = _counts(np.random.default_rng(0))
    expression = task.export_expression(adata, ["TFA", "TFB", "RARE"], n_variable_genes=1)
    assert list(expression.index) == ["TFA", "TFB", "G1"]  # RARE is a TF but detected in < 10% of cells
    assert list(expression.columns) == list(adata.obs_names)
    expected = np.log1p(x[:, 0] / x.sum(axis=1) * 1e4)
    assert np.allclose(expression.loc["TFA"].to_numpy(), expected)
    with pytest.raises(InputError, match="no TF of the list"):
        task.export_expression(adata, ["NOPE"])


def test_symbol_vectors_prefer_contextual_and_fall_back_to_static():
    contextual = pd.DataFrame({"species": ["mouse", "human"], "symbol": ["Sox2", "SOX2"],
                               "dim_0": [1.0, 9.0], "dim_1": [0.0, 9.0]})
    static = pd.DataFrame({"mouse_symbol": ["Sox2", "Nanog", ""], "human_symbol": ["SOX2", "NANOG", "X"],
                           "dim_0": [5.0, 0.0, 7.0], "dim_1": [5.0, 2.0, 7.0]})
    vectors = symbol_vectors(contextual, static, "mouse")
    assert vectors.loc["SOX2"].tolist() == [1.0, 0.0] and vectors.loc["NANOG"].tolist() == [0.0, 2.0]
    assert list(vectors.index) == ["SOX2", "NANOG"]


def test_symbol_tokens_map_one_species():
    dictionary = pd.DataFrame({"token_id": [0, 4, 5, 6], "token_class": ["special", "homologous", "human", "mouse"],
                               "human_symbol": ["", "SOX2", "XIST", ""], "mouse_symbol": ["", "Sox2", "", "Gm1"]})
    assert task.symbol_tokens(dictionary, "mouse") == {"SOX2": 4, "GM1": 6}
    assert task.symbol_tokens(dictionary, "human") == {"SOX2": 4, "XIST": 5}


def test_prior_sweep_thresholds_filter_monotonically():
    genes = ["A", "B", "C", "D"]
    vectors = pd.DataFrame([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.6, 0.8]], index=genes)
    deepsem = pd.DataFrame({"source": ["A", "A", "A", "B"], "target": ["B", "C", "D", "C"],
                            "score": [0.9, 0.8, 0.7, 0.6]})
    network = pd.DataFrame({"Gene1": ["A"], "Gene2": ["B"]})
    sweep = task.prior_sweep(deepsem, vectors, {"truth": network}, genes, ["A", "B"], [0.0, 0.5, 0.95, 1.0])
    kept = sweep["kept_fraction"].tolist()
    # strictly above the threshold: cos(A, C) = 0 is dropped even at threshold 0
    assert kept == sorted(kept, reverse=True) and kept[0] == 0.75 and kept[-1] == 0.0
    # cos(A,B) = 0.994 > 0.95 keeps only the true edge; at 1.0 nothing is kept and AUPRC falls to the density
    assert kept[2] == 0.25 and sweep.loc[2, "auprc_ratio"] == pytest.approx(1 / sweep.loc[2, "density"])
    assert sweep.loc[3, "auprc_ratio"] == pytest.approx(1.0)


def test_ugrn_pairs_are_balanced_and_capped():
    genes = [f"G{i}" for i in range(30)]
    expression = pd.DataFrame(np.zeros((30, 2)), index=genes)
    network = pd.DataFrame({"Gene1": ["G0"] * 10 + ["G1"] * 10, "Gene2": genes[2:12] + genes[12:22]})
    tokens = {gene: 10 + i for i, gene in enumerate(genes)}
    pairs = task.ugrn_pairs(expression, network, ["G0", "G1"], tokens, max_positive=5, seed=3)
    assert (pairs["label"] == 1).sum() == 5 and (pairs["label"] == 0).sum() == 5
    truth = set(zip(network.Gene1, network.Gene2))
    assert all((s, t) in truth for s, t in pairs.loc[pairs.label == 1, ["source", "target"]].itertuples(index=False))
    negatives = pairs.loc[pairs.label == 0, ["source", "target"]].itertuples(index=False)
    assert not any((s, t) in truth for s, t in negatives)
    again = task.ugrn_pairs(expression, network, ["G0", "G1"], tokens, max_positive=5, seed=3)
    pd.testing.assert_frame_equal(pairs, again)


def test_ugrn_table_has_every_extractor_and_the_ensemble(tiny_model):
    model, gene_tokens = tiny_model
    rng = np.random.default_rng(0)
    datasets = {}
    for name in ("one", "two"):
        sources = [gene_tokens[0], gene_tokens[1]]
        rows = [(s, t, 1) for s in sources for t in gene_tokens[2:6]] + \
               [(s, t, 0) for s in sources for t in gene_tokens[6:10]]
        pairs = pd.DataFrame(rows, columns=["source_token", "target_token", "label"])
        datasets[name] = {"pairs": pairs.sample(frac=1.0, random_state=int(rng.integers(100))).reset_index(drop=True),
                          "genes": gene_tokens[:10], "species": "human"}
    table = task.ugrn_table(model, datasets)
    assert set(table["extractor"]) == {"embedding", "vvp", "gdt", "vvp+gdt"}
    assert len(table) == 8 and set(zip(table.train_dataset, table.test_dataset)) == {("one", "two"), ("two", "one")}
    assert table["auroc"].between(0, 1).all() and (table["auprc_ratio"] == table["auprc"] / 0.5).all()
    # same tokens, same labels in both datasets: the token-keyed embedding features transfer perfectly
    assert (table.loc[table.extractor == "embedding", "auroc"] == 1.0).all()


@pytest.fixture(scope="module")
def tiny_model():
    return tiny_pretraining_model(40, knowledge_dim=None, initializer_range=0.02), list(range(10, 30))


def test_method_edges_dispatch_and_inputs(tmp_path):
    rng = np.random.default_rng(0)
    expression = pd.DataFrame(rng.normal(size=(5, 40)), index=["A", "B", "C", "D", "E"])
    expression.loc["C"] = expression.loc["A"] * 2 + rng.normal(scale=0.01, size=40)
    pearson = task.method_edges("pearson", expression, ["A", "B"])
    assert tuple(pearson.iloc[0][["source", "target"]]) == ("A", "C")
    vectors = pd.DataFrame(np.eye(5), index=list("ABCDE"))
    with pytest.raises(InputError, match="needs gene embeddings"):
        task.method_edges("cosine_untrained", expression, ["A", "B"])
    with pytest.raises(InputError, match="filters DeepSEM"):
        task.method_edges("deepsem_prior_untrained", expression, ["A", "B"], vectors=vectors)
    with pytest.raises(InputError, match="not a baseline"):
        task.method_edges("nope", expression, ["A", "B"])
    # the dataset folder round trip the rules use
    from genecompass.tasks.grn.beeline import write_beeline_dataset
    folder = write_beeline_dataset(tmp_path / "input", expression, {"truth": pd.DataFrame(
        {"Gene1": ["A"], "Gene2": ["C"]})}, tfs=["A", "B"])
    read, tfs, networks = task.read_grn_dataset(folder)
    assert tfs == ["A", "B"] and list(networks) == ["truth"] and read.shape == (5, 40)
