"""CAME on torch_geometric: graph construction, training, selection and input errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import torch_threads
from scipy import sparse

from genecompass.tasks.came import model as came
from genecompass.tasks.came.model import (
    CELL,
    CELL_SELF_LOOP,
    EDGE_TYPES,
    EXPRESS,
    EXPRESSED_BY,
    GENE,
    GENE_SELF_LOOP,
    HOMOLOG_WITH,
    SIMILAR_TO,
    CameConfig,
)

TYPES = ("alpha", "beta", "gamma")
N_GENES, N_HOMOLOGOUS, N_MARKERS = 60, 50, 6
# CAME's settings, but narrower, fewer epochs and k-means pre-clustering (quick, no igraph needed).
# A short schedule (came 0.1.13 trains 350 epochs at lr 5e-4, one pass, additive attention): 60 epochs at
# lr 1e-3 with two summed passes and the multiplicative score (its older settings, which learn this small
# world within 60 epochs), and the selection window of 1e-4 that the selection test checks.
FAST = {"hidden_dim": 32, "n_heads": 4, "n_epochs": 60, "select_from_epoch": 20, "cluster_method": "kmeans",
        "lr": 1e-3, "forward_passes": 2, "attention": "mul", "ami_tolerance": 1e-4}


def _simulate(seed: int = 0, n_cells: int = 150):
    """Two species, 3 cell types; type t has markers r{6t..6t+5} / q{6t..6t+5}, homologous one to one.

    Genes 0..49 are one-to-one homologs, r50–q50, r50–q51, r51–q51 are many-to-many, genes 52..59 have
    no homolog. The query has its own per-gene expression shifts and weaker markers.
    """
    rng = np.random.default_rng(seed)
    base = rng.gamma(1.0, 0.4, size=N_GENES)  # sparse, like scRNA-seq: most genes undetected

    def species(shift_sd: float, marker: float):
        labels = rng.permutation(np.arange(n_cells) % len(TYPES))
        mean = np.tile(base * np.exp(rng.normal(0, shift_sd, N_GENES)), (n_cells, 1))
        for t in range(len(TYPES)):
            mean[labels == t, t * N_MARKERS:(t + 1) * N_MARKERS] += marker
        counts = rng.poisson(mean * rng.uniform(0.5, 1.5, n_cells)[:, None])
        size = counts.sum(axis=1, keepdims=True).clip(min=1)
        return np.log1p(counts / size * 100).astype(np.float32), np.asarray(TYPES, dtype=object)[labels]

    ref_x, ref_labels = species(0.0, 2.5)
    query_x, query_labels = species(0.4, 2.0)
    ref_genes = [f"r{i}" for i in range(N_GENES)]
    query_genes = [f"q{i}" for i in range(N_GENES)]
    homology = pd.DataFrame([(f"r{i}", f"q{i}") for i in range(N_HOMOLOGOUS)]
                            + [("r50", "q50"), ("r50", "q51"), ("r51", "q51")], columns=["mouse", "human"])
    return {"ref_x": ref_x, "ref_labels": ref_labels, "ref_genes": ref_genes, "query_x": query_x,
            "query_labels": query_labels, "query_genes": query_genes, "homology": homology}


def _graph(data, **kwargs):
    return came.build_came_graph(data["ref_x"], data["query_x"], data["homology"], data["ref_labels"],
                                 reference_genes=data["ref_genes"], query_genes=data["query_genes"], **kwargs)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny graphs: one thread avoids OpenMP overhead (and contention on shared CI machines)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def data():
    return _simulate()


@pytest.fixture(scope="module")
def graph(data):
    return _graph(data)


@pytest.fixture(scope="module")
def trained(graph, data):
    return came.train_came(graph, config=CameConfig(**FAST), seed=0, query_labels=data["query_labels"])


# --------------------------------------------------------------------------- graph


def test_graph_has_came_relations_and_counts(graph, data):
    n_ref, n_query = len(data["ref_x"]), len(data["query_x"])
    assert set(graph.edge_types) == set(EDGE_TYPES)
    assert graph[CELL].num_nodes == n_ref + n_query and graph[GENE].num_nodes == 2 * N_GENES
    assert graph[GENE].names[:N_GENES] == data["ref_genes"] and graph[GENE].names[N_GENES:] == data["query_genes"]
    assert graph.classes == sorted(TYPES)
    assert (graph[CELL].y[:n_ref] >= 0).all() and (graph[CELL].y[n_ref:] == -1).all()
    assert [graph.classes[i] for i in graph[CELL].y[:n_ref].tolist()] == list(data["ref_labels"])

    # cell -> gene: one edge per non-zero value, weighted by it, within the cell's species
    expression = sparse.block_diag([sparse.csr_matrix(data["ref_x"]), sparse.csr_matrix(data["query_x"])]).tocsr()
    cells, genes = graph[EXPRESS].edge_index.numpy()
    assert len(cells) == expression.nnz
    np.testing.assert_array_equal(graph[EXPRESS].edge_weight.numpy(), np.asarray(expression[cells, genes]).ravel())
    assert (graph[CELL].species[cells] == graph[GENE].species[genes]).all()
    back = graph[EXPRESSED_BY].edge_index.numpy()
    assert set(zip(back[1], back[0])) == set(zip(cells, genes))

    # self-loops: exactly one per node
    for rel, n in ((CELL_SELF_LOOP, n_ref + n_query), (GENE_SELF_LOOP, 2 * N_GENES)):
        np.testing.assert_array_equal(graph[rel].edge_index.numpy(), np.tile(np.arange(n), (2, 1)))


def test_homology_edges_match_the_table(graph, data):
    names = np.asarray(graph[GENE].names)
    src, dst = graph[HOMOLOG_WITH].edge_index.numpy()
    species = graph[GENE].species.numpy()
    assert (species[src] != species[dst]).all()
    forward = {(names[a], names[b]) for a, b in zip(src, dst) if species[a] == 0}
    backward = {(names[b], names[a]) for a, b in zip(src, dst) if species[a] == 1}
    table = set(map(tuple, data["homology"].to_numpy()))
    assert forward == table and backward == table and len(src) == 2 * len(table)


def test_cell_features_are_zscored_one_to_one_homologs(graph, data):
    pairs = {tuple(pair) for pair in graph.feature_pairs}
    assert pairs == {(f"r{i}", f"q{i}") for i in range(N_HOMOLOGOUS)}  # many-to-many pairs are not features
    x = graph[CELL].x.numpy()
    n_ref = len(data["ref_x"])
    assert x.shape == (n_ref + len(data["query_x"]), N_HOMOLOGOUS)
    for block, raw in ((x[:n_ref], data["ref_x"]), (x[n_ref:], data["query_x"])):
        np.testing.assert_allclose(block.mean(axis=0), 0, atol=1e-5)
        constant = raw[:, :N_HOMOLOGOUS].std(axis=0) == 0  # never detected: left at 0
        np.testing.assert_allclose(block.std(axis=0, ddof=1)[~constant], 1, atol=1e-4)
        assert (block[:, constant] == 0).all()
    column = [p[0] for p in graph.feature_pairs].index("r3")
    raw = data["query_x"][:, 3]
    np.testing.assert_allclose(x[n_ref:, column], (raw - raw.mean()) / raw.std(ddof=1), atol=1e-4)


def test_knn_edges_are_symmetric_within_species(graph, data):
    src, dst = graph[SIMILAR_TO].edge_index.numpy()
    species = graph[CELL].species.numpy()
    assert (species[src] == species[dst]).all() and (src != dst).all()
    assert set(zip(src, dst)) == set(zip(dst, src))
    degree = np.bincount(src, minlength=graph[CELL].num_nodes)
    assert degree.min() >= 4  # n_neighbors=5 counts the cell itself

    crossed = _graph(data, cross_species_neighbors=10)
    src, dst = crossed[SIMILAR_TO].edge_index.numpy()
    across = species[src] != species[dst]
    assert across.sum() > 0 and set(zip(src, dst)) == set(zip(dst, src))
    # mutual neighbours on the marker-driven features mostly join cells of the same type
    labels = np.concatenate([data["ref_labels"], data["query_labels"]])
    assert np.mean(labels[src[across]] == labels[dst[across]]) > 0.8


def test_anndata_input_matches_arrays_and_node_subsets(graph, data):
    import anndata

    reference = anndata.AnnData(sparse.csr_matrix(data["ref_x"]), var=pd.DataFrame(index=data["ref_genes"]))
    reference.obs["cell_type"] = data["ref_labels"]
    query = anndata.AnnData(data["query_x"], var=pd.DataFrame(index=data["query_genes"]))
    again = came.build_came_graph(reference, query, data["homology"], "cell_type")
    for rel in EDGE_TYPES:
        assert torch.equal(again[rel].edge_index, graph[rel].edge_index)
    assert torch.equal(again[CELL].x, graph[CELL].x)

    subset = _graph(data, node_genes=(data["ref_genes"][:40], data["query_genes"][10:]))
    assert subset[GENE].num_nodes == 40 + 50
    names = np.asarray(subset[GENE].names)
    src, dst = subset[HOMOLOG_WITH].edge_index.numpy()
    assert {(names[a], names[b]) for a, b in zip(src, dst) if a < 40} == {(f"r{i}", f"q{i}") for i in range(10, 40)}


# --------------------------------------------------------------------------- layers


def test_relation_messages_are_averaged_over_in_neighbours():
    edge_index = torch.tensor([[0, 1, 2, 2], [0, 0, 0, 1]])  # sources 0,1,2 -> destination 0; 2 -> 1
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0], [5.0, 2.0]])
    out = came.MeanOverNeighbours()(x, came.mean_adjacency(edge_index, 3, 3))
    np.testing.assert_allclose(out.numpy(), [[3.0, 2 / 3], [5.0, 2.0], [0.0, 0.0]], rtol=1e-6)
    weighted = came.mean_adjacency(edge_index, 3, 3, torch.tensor([1.0, 2.0, 3.0, 1.0]))
    np.testing.assert_allclose(came.MeanOverNeighbours()(x, weighted).numpy()[0], [(1 + 6 + 15) / 3, 2.0],
                               rtol=1e-6)


def test_attention_is_a_softmax_over_each_cells_genes():
    torch.manual_seed(0)
    layer = came.CellGeneAttention(4, 3, n_heads=2, attention_dropout=0.0, feature_dropout=0.0).eval()
    genes, cells = torch.randn(5, 4), torch.randn(3, 4)
    edge_index = torch.tensor([[0, 1, 2, 3, 4], [0, 0, 0, 1, 1]])  # cell 2 expresses nothing
    out, attention = layer(genes, cells, edge_index, return_attention=True)
    assert out.shape == (3, 3) and attention.shape == (5, 2)
    sums = torch.zeros(3, 2).index_add_(0, edge_index[1], attention)
    np.testing.assert_allclose(sums[:2].numpy(), 1.0, rtol=1e-6)
    assert (out[2] == 0).all()
    h_src = layer.lin_src(genes).view(5, 2, 3)
    h_dst = layer.lin_dst(cells).view(3, 2, 3)
    score = (h_src[:3] * layer.att_src).sum(-1) * (h_dst[0] * layer.att_dst).sum(-1)  # CAME's "mul" score
    alpha = torch.softmax(torch.nn.functional.leaky_relu(score, 0.2), dim=0)
    torch.testing.assert_close(out[0], (alpha.unsqueeze(-1) * h_src[:3]).sum(0).mean(0))


# --------------------------------------------------------------------------- training and selection


def test_came_annotates_query_well_above_chance(trained, data):
    assert trained.metrics["accuracy"] > 0.8
    assert trained.metrics["macro_f1"] > 0.8
    assert set(trained.predictions) <= set(TYPES)
    np.testing.assert_allclose(trained.probabilities.sum(axis=1), 1, atol=1e-5)
    assert trained.probabilities.shape == (len(data["query_x"]), 3)
    assert trained.gene_embeddings.shape == (2 * N_GENES, FAST["hidden_dim"])
    assert trained.gene_embedding_frame().index[0] == ("reference", "r0")
    history = trained.history
    assert history["loss"].iloc[-5:].mean() < 0.7 * history["loss"].iloc[:5].mean()
    assert history["train_accuracy"].iloc[-10:].mean() > 0.8  # with dropout active, as in training


def test_selection_keeps_the_last_epoch_with_the_highest_ami(trained):
    trace = trained.ami_trace
    eligible = trace[trace.index >= FAST["select_from_epoch"]]
    best = eligible.max()
    assert trained.selected_epoch == eligible[eligible >= best - 1e-4].index.max()
    assert trained.selected_ami == pytest.approx(best, abs=1e-4)
    assert len(trace) == FAST["n_epochs"]


def test_same_seed_same_predictions_and_query_labels_do_not_steer_selection(trained, graph, data):
    shuffled = np.random.default_rng(1).permutation(data["query_labels"])
    rerun = came.train_came(graph, config=CameConfig(**FAST), seed=0, query_labels=shuffled)
    np.testing.assert_array_equal(rerun.predictions, trained.predictions)
    np.testing.assert_array_equal(rerun.probabilities, trained.probabilities)
    np.testing.assert_array_equal(rerun.gene_embeddings, trained.gene_embeddings)
    assert rerun.selected_epoch == trained.selected_epoch
    pd.testing.assert_series_equal(rerun.ami_trace, trained.ami_trace)
    assert rerun.metrics["accuracy"] < 0.6 < trained.metrics["accuracy"]  # the labels did reach the report
    assert not rerun.history["query_accuracy"].equals(trained.history["query_accuracy"])


def test_seeds_summary(graph, data, trained):
    runs = came.run_came_seeds(graph, [0, 1], config=CameConfig(**FAST), query_labels=data["query_labels"])
    np.testing.assert_array_equal(runs.results[0].probabilities, trained.probabilities)
    assert not np.array_equal(runs.results[1].probabilities, trained.probabilities)
    accuracies = runs.per_seed["accuracy"].to_numpy()
    assert runs.mean["accuracy"] == pytest.approx(accuracies.mean())
    assert runs.sd["accuracy"] == pytest.approx(accuracies.std(ddof=1))
    assert set(runs.per_seed.columns) == {"seed", "selected_epoch", "ami", "accuracy", "macro_f1"}
    assert runs.to_dict()["seeds"] == [0, 1]


def test_given_gene_embeddings_are_used(data):
    rng = np.random.default_rng(0)
    names = data["ref_genes"] + data["query_genes"]
    first = pd.DataFrame(rng.normal(size=(len(names), 16)), index=names)
    second = pd.DataFrame(rng.normal(size=(len(names), 16)), index=names)
    config = CameConfig(**{**FAST, "n_epochs": 5, "select_from_epoch": 0})
    results = []
    for table in (first, second):
        graph = _graph(data, gene_embeddings=table)
        np.testing.assert_allclose(graph[GENE].x.numpy(), table.to_numpy(), rtol=1e-6)
        result = came.train_came(graph, config=config, seed=0)
        assert result.state_dict["embed.weights.self_loop_gene.weight"].shape == (FAST["hidden_dim"], 16)
        results.append(result)
    plain = came.train_came(_graph(data), config=config, seed=0)
    assert not any("self_loop_gene" in key for key in plain.state_dict)  # CAME: genes start from their cells
    assert not np.allclose(results[0].probabilities, results[1].probabilities)
    assert not np.allclose(results[0].gene_embeddings, results[1].gene_embeddings)


def test_leiden_and_kmeans_find_planted_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=10, size=(3, 5))
    truth = np.repeat(np.arange(3), 40)
    points = centres[truth] + rng.normal(size=(120, 5))
    from sklearn.metrics import adjusted_rand_score

    kmeans = came.cluster_cells(points, method="kmeans", n_clusters=3)
    assert adjusted_rand_score(truth, kmeans) == 1.0
    if importlib.util.find_spec("igraph") is None:
        pytest.skip("igraph not installed: Leiden path not tested")
    leiden = came.cluster_cells(points, method="leiden", seed=3)
    assert adjusted_rand_score(truth, leiden) == 1.0
    np.testing.assert_array_equal(leiden, came.cluster_cells(points, method="leiden", seed=3))


def test_select_genes_finds_markers_and_one_to_one_features(data):
    clusters = came.cluster_query(data["query_x"], query_genes=data["query_genes"], method="kmeans", n_clusters=3)
    selection = came.select_genes(data["ref_x"], data["query_x"], data["homology"], data["ref_labels"], clusters,
                                  reference_genes=data["ref_genes"], query_genes=data["query_genes"], n_degs=6)
    markers = {f"r{i}" for i in range(len(TYPES) * N_MARKERS)}
    assert markers <= set(selection.reference_degs)
    pairs = set(map(tuple, selection.feature_pairs.to_numpy()))
    assert {(f"r{i}", f"q{i}") for i in range(len(TYPES) * N_MARKERS)} <= pairs
    assert all(int(r[1:]) < N_HOMOLOGOUS and r[1:] == q[1:] for r, q in pairs)
    graph = _graph(data, node_genes=selection.node_genes, feature_pairs=selection.feature_pairs)
    assert graph[CELL].x.shape[1] == len(pairs)


# --------------------------------------------------------------------------- errors


def test_no_shared_homologs_is_a_clear_error(data):
    unrelated = pd.DataFrame({"a": ["R1", "R2"], "b": ["Q1", "Q2"]})
    with pytest.raises(ValueError, match="none of the 2 homology pairs links"):
        came.build_came_graph(data["ref_x"], data["query_x"], unrelated, data["ref_labels"],
                              reference_genes=data["ref_genes"], query_genes=data["query_genes"])
    swapped = data["homology"].iloc[:, ::-1]
    with pytest.raises(ValueError, match="reference species in the first column"):
        came.build_came_graph(data["ref_x"], data["query_x"], swapped, data["ref_labels"],
                              reference_genes=data["ref_genes"], query_genes=data["query_genes"])
    many_only = pd.DataFrame([("r50", "q50"), ("r50", "q51"), ("r51", "q51")])
    with pytest.raises(ValueError, match="no one-to-one homologous gene pair"):
        came.build_came_graph(data["ref_x"], data["query_x"], many_only, data["ref_labels"],
                              reference_genes=data["ref_genes"], query_genes=data["query_genes"])


def test_label_length_mismatch_is_a_clear_error(data, graph):
    with pytest.raises(ValueError, match="149 labels for 150 reference cells"):
        came.build_came_graph(data["ref_x"], data["query_x"], data["homology"], data["ref_labels"][:-1],
                              reference_genes=data["ref_genes"], query_genes=data["query_genes"])
    with pytest.raises(ValueError, match="3 labels for 150 query cells"):
        came.train_came(graph, config=CameConfig(**FAST), query_labels=["alpha"] * 3)
    with pytest.raises(ValueError, match="cluster labels for 150 query cells"):
        came.train_came(graph, [0, 1], config=CameConfig(**FAST))


def test_missing_gene_embeddings_error_and_fallbacks(data):
    names = data["ref_genes"] + data["query_genes"]
    table = pd.DataFrame(np.random.default_rng(0).normal(size=(len(names), 8)), index=names)
    partial = table.drop(index=["r1", "q2", "q3"])
    with pytest.raises(ValueError, match=r"3 of 120 gene nodes have no embedding.*missing_embedding='zero'"):
        _graph(data, gene_embeddings=partial)
    zero = _graph(data, gene_embeddings=partial, missing_embedding="zero")[GENE].x.numpy()
    assert (zero[names.index("r1")] == 0).all() and (zero[names.index("q3")] == 0).all()
    np.testing.assert_allclose(zero[names.index("r0")], table.loc["r0"].to_numpy(), rtol=1e-6)
    mean = _graph(data, gene_embeddings=partial, missing_embedding="mean")[GENE].x.numpy()
    np.testing.assert_allclose(mean[names.index("q2")], partial.to_numpy().mean(axis=0), rtol=1e-5)
    with pytest.raises(ValueError, match="unknown value 'drop'"):
        _graph(data, gene_embeddings=partial, missing_embedding="drop")
    with pytest.raises(ValueError, match="none of the 120 gene nodes"):
        _graph(data, gene_embeddings=table.set_axis([f"x{i}" for i in range(len(names))]))


def test_other_bad_inputs(data):
    with pytest.raises(ValueError, match="array without gene names"):
        came.build_came_graph(data["ref_x"], data["query_x"], data["homology"], data["ref_labels"])
    with pytest.raises(ValueError, match="negative values"):
        came.build_came_graph(-data["ref_x"], data["query_x"], data["homology"], data["ref_labels"],
                              reference_genes=data["ref_genes"], query_genes=data["query_genes"])
    with pytest.raises(ValueError, match="select_from_epoch"):
        CameConfig(n_epochs=5, select_from_epoch=5)
    with pytest.raises(ValueError, match="not a CAME graph"):
        came.train_came(object())
