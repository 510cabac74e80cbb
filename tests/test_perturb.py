"""Perturbation prediction: the demo Perturb-seq world, the loader, GEARS's split and graphs,
the metrics, the baselines and GEARS itself against Train Mean."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from genecompass.errors import InputError
from genecompass.simulate.perturbseq import (
    NORMAN_SHAPE,
    real_interaction_classes,
    simulate_perturbseq,
    write_perturbseq,
)
from genecompass.tasks.perturbation import benchmark as task
from genecompass.tasks.perturbation import data, metrics
from genecompass.tasks.perturbation.baselines import regression_baseline, train_mean
from genecompass.tasks.perturbation.gears import GearsModel, GearsSettings, ProjectedEmbedding

NORMAN = Path(__file__).resolve().parents[2] / "shared/data/perturb/norman2019"
# A smaller experiment than the demo's, same world and design: fast enough for unit tests.
SMALL = {"cells_per_condition": 30, "control_cells": 300}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    out = tmp_path_factory.mktemp("perturbseq")
    paths = write_perturbseq(out, seed=42, params=SMALL)
    return {key: Path(value) for key, value in paths.items()}


@pytest.fixture(scope="module")
def prepared(experiment):
    prepared, report = task.prepare(experiment["h5ad"], data.read_gmt(experiment["go"]), 300, 20, seed=42)
    return prepared, report


# ---------------------------------------------------------------- the demo experiment


def test_norman_shape_is_counted_from_the_real_screen():
    if not NORMAN.exists():
        pytest.skip(f"{NORMAN} missing")
    layout = pd.read_csv(NORMAN / "optimal_umap_layout.csv", index_col=0)
    singles, doubles = set(), set()
    for name in layout.index:
        a, b = name.split("_")
        if "NegCtrl" in a or "NegCtrl" in b:
            singles.add(b if "NegCtrl" in a else a)
        else:
            doubles.add(tuple(sorted((a, b))))
    assert len(singles) == NORMAN_SHAPE["n_single_genes"] and len(doubles) == NORMAN_SHAPE["n_doubles"]
    assert len({g for d in doubles for g in d}) == NORMAN_SHAPE["n_genes_in_doubles"]
    classes = real_interaction_classes(NORMAN / "regr_fits_final.csv")
    for name, share in NORMAN_SHAPE["gi_class_fractions"].items():
        assert classes[name].mean() == pytest.approx(share, abs=1e-3)


def test_experiment_layout_and_size_follow_norman(experiment):
    adata, design, _ = simulate_perturbseq(42, params=SMALL)
    conditions = adata.obs["condition"].astype(str)
    assert (conditions == "ctrl").sum() == 300
    singles = [c for c in conditions.unique() if c.endswith("+ctrl")]
    doubles = [c for c in conditions.unique() if c != "ctrl" and not c.endswith("+ctrl")]
    n_genes = len(design.modes)
    assert len(singles) == n_genes
    # ~1.24 doubles per perturbed gene, as in the real screen
    assert len(doubles) == round(n_genes * 131 / 106)
    assert {"activation", "knockdown"} == set(design.modes.values())
    assert adata.var_names.is_unique and adata.var_names.str.startswith("ENSG").all()
    # X is log1p CP10k of the counts layer
    counts = np.asarray(adata.layers["counts"][:5].todense())
    expected = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)
    assert np.allclose(np.asarray(adata.X[:5].todense()), expected, atol=1e-4)
    # the loader accepts the written file
    data.check_perturb_dataset(adata, "demo")


def test_same_seed_same_experiment():
    a, _, _ = simulate_perturbseq(7, params={"cells_per_condition": 5, "control_cells": 20})
    b, _, _ = simulate_perturbseq(7, params={"cells_per_condition": 5, "control_cells": 20})
    assert (a.X != b.X).nnz == 0 and a.obs.equals(b.obs)


def test_planted_interactions_are_measurable(experiment):
    truth = pd.read_csv(experiment["interactions"], sep="\t", index_col=0)
    by_kind = truth.groupby("planted")
    magnitude, fit = by_kind["magnitude"].median(), by_kind["fit_corr"].median()
    # additive pairs: both coefficients ~1 (magnitude sqrt 2)
    assert magnitude["none"] == pytest.approx(np.sqrt(2), abs=0.1)
    assert magnitude["synergy"] > magnitude["none"] + 0.4
    assert magnitude["buffering"] < 0.8
    assert fit["neomorphic"] < fit["none"] - 0.15
    assert by_kind["dominance"].median()["epistatic"] > 0.7
    assert truth.loc[truth["planted"] == "buffering", "buffering"].all()


def test_perturbation_specific_variance_is_high(prepared):
    _, report = prepared
    variance = report["variance_all"]
    # Perturbations differ: the benchmark paper's datasets range from 0.66 (Adamson) to 0.12 (Replogle K562)
    assert variance["median_pairwise_delta_pearson"] < 0.2
    assert variance["perturbation_specific_variance_share"] > 0.6


# ---------------------------------------------------------------- loader, split, graphs


def test_loader_reads_h5ad_folder_and_gears_zip(experiment, tmp_path):
    archive = tmp_path / "norman.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(experiment["h5ad"], "norman/perturb_processed.h5ad")
    for source in (experiment["h5ad"], experiment["h5ad"].parent, archive):
        adata = data.load_perturb_dataset(source)
        assert "ctrl" in set(adata.obs["condition"].astype(str))


@pytest.mark.parametrize("break_it, field", [
    (lambda a: setattr(a, "obs", a.obs.drop(columns="condition")), "obs.condition"),
    (lambda a: setattr(a, "var", a.var.drop(columns="gene_name")), "var.gene_name"),
    (lambda a: setattr(a, "obs", a.obs.assign(condition=a.obs["condition"].astype(str).str.replace("ctrl", "NT"))),
     "obs.condition"),
    (lambda a: setattr(a, "obs", a.obs.assign(condition="A+B+C")), "obs.condition"),
])
def test_loader_names_the_bad_field(experiment, tmp_path, break_it, field):
    import anndata as ad

    adata = ad.read_h5ad(experiment["h5ad"])
    break_it(adata)
    path = tmp_path / "bad.h5ad"
    adata.write_h5ad(path)
    with pytest.raises(InputError) as error:
        data.load_perturb_dataset(path)
    assert error.value.field == field and str(path) in str(error.value)


def test_simulation_split_follows_gears():
    genes = [f"G{i}" for i in range(20)]
    conditions = ["ctrl", *[f"{g}+ctrl" for g in genes],
                  *[f"{a}+{b}" for i, a in enumerate(genes) for b in genes[i + 1:i + 3]]]
    split = data.simulation_split(conditions, seed=3)
    assert set(split.assignment) == set(conditions) and split.assignment["ctrl"] == "train"
    # the test round's training genes: the singles left for training and validation
    train_genes = {data.condition_genes(c)[0] for c in split.conditions("train") + split.conditions("val")
                   if c.endswith("+ctrl")}
    for condition in split.conditions("test"):
        seen = sum(g in train_genes for g in data.condition_genes(condition))
        group = split.subgroup[condition]
        if group == "unseen_single":
            assert seen == 0 and condition.endswith("+ctrl")
        else:
            assert group == f"combo_seen{seen}"
    assert {"unseen_single", "combo_seen1", "combo_seen2"} <= set(split.subgroup.values())
    assert data.simulation_split(conditions, seed=3).assignment == split.assignment
    assert data.simulation_split(conditions, seed=4).assignment != split.assignment


def test_go_graph_is_jaccard_with_top_k(tmp_path):
    gmt = tmp_path / "go.gmt"
    gmt.write_text("T1\td\tA\tB\tC\nT2\td\tA\tB\nT3\td\tC\tD\nT4\td\tE\n")
    terms = data.read_gmt(gmt)
    index, weight = data.go_graph(["A", "B", "C", "D", "E"], terms, k=1, threshold=0.1)
    edges = {(int(s), int(t)): float(w) for s, t, w in zip(index[0], index[1], weight)}
    # A {T1,T2}, B {T1,T2}: Jaccard 1; C {T1,T3} vs A: 1/3; D {T3} vs C: 1/2; E alone
    assert edges[(0, 1)] == pytest.approx(1.0) and edges[(1, 1)] == pytest.approx(1.0)
    assert edges[(3, 2)] == pytest.approx(0.5) and (0, 2) not in edges  # k=1 keeps self + best
    assert [t for s, t in edges if t == 4] == [4]
    with pytest.raises(InputError):
        bad = tmp_path / "bad.gmt"
        bad.write_text("only_a_name\n")
        data.read_gmt(bad)


def test_coexpression_graph_links_correlated_genes():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(200, 1))
    X = np.hstack([base, base + 0.1 * rng.normal(size=(200, 1)), rng.normal(size=(200, 1))])
    index, weight = data.coexpression_graph(X, k=5, threshold=0.4)
    edges = set(zip(index[0].tolist(), index[1].tolist()))
    assert (0, 1) in edges and (1, 0) in edges and (2, 0) not in edges and (2, 2) in edges


def test_top_de_genes_find_the_perturbed_target(prepared):
    prep, _ = prepared
    hits = [c for c in prep.de_genes if c.endswith("+ctrl") and c.split("+")[0] in prep.de_genes[c][:3]]
    # CRISPRa/CRISPRi move the target's own mRNA most for nearly every single perturbation
    assert len(hits) >= 0.8 * sum(c.endswith("+ctrl") for c in prep.de_genes)


# ---------------------------------------------------------------- metrics and baselines


def test_metrics_of_a_hand_made_condition():
    genes = ["A", "B", "C", "D"]
    control = pd.Series([1.0, 1.0, 1.0, 1.0], index=genes)
    truth = pd.Series([3.0, 0.0, 1.5, 1.0], index=genes)
    perfect = metrics.condition_metrics(truth, truth, control, ["A", "B", "C"], "A+ctrl")
    assert perfect["mse_top20_de"] == 0 and perfect["wrong_direction_top20_de"] == 0
    assert perfect["pearson_delta"] == pytest.approx(1.0)
    guess = pd.Series([2.0, 1.5, 1.5, 1.0], index=genes)
    scored = metrics.condition_metrics(guess, truth, control, ["A", "B", "C"], "A+ctrl")
    assert scored["deviation_top20_de"] == pytest.approx(1.0 + 1.5 + 0.0)
    assert scored["mse_top20_de"] == pytest.approx((1 + 2.25) / 3)
    assert scored["wrong_direction_top20_de"] == 1  # B: true down, predicted up
    # without the target A only B and C remain: deltas (-1, .5) vs (.5, .5) -> constant prediction
    assert np.isnan(scored["pearson_delta_top20_de_no_target"])


def test_smaller_deviation_share_counts_conditions():
    table = pd.DataFrame({"method": ["x", "y", "x", "y"], "condition": ["c1", "c1", "c2", "c2"],
                          "subgroup": ["s", "s", "t", "t"], "deviation_top20_de": [1.0, 2.0, 3.0, 2.0]})
    share = metrics.smaller_deviation_share(table, "x", "y").set_index("subgroup")["share"]
    assert share["all"] == 0.5 and share["s"] == 1.0 and share["t"] == 0.0


def test_regression_baselines_learn_a_linear_response():
    rng = np.random.default_rng(1)
    genes = [f"g{i}" for i in range(30)]
    features = pd.DataFrame(rng.normal(size=(12, 4)), index=[f"P{i}" for i in range(12)])
    effect = rng.normal(size=(4, 30))
    conditions = [f"P{i}+ctrl" for i in range(12)]
    profiles = pd.DataFrame(np.vstack([np.zeros(30), features.to_numpy() @ effect]),
                            index=["ctrl", *conditions], columns=genes)
    train, val, test = conditions[:8], conditions[8:10], conditions[10:]
    predicted, info = regression_baseline("elastic_net", features, profiles, train, val, test, seed=0)
    truth = profiles.loc[test].to_numpy()
    assert np.corrcoef(predicted.to_numpy().ravel(), truth.ravel())[0, 1] > 0.95
    assert info["chosen"]["alpha"] == 0.001
    mean = train_mean(profiles, ["ctrl", *train], test)
    assert np.allclose(mean.to_numpy(), profiles.loc[train].mean().to_numpy())


# ---------------------------------------------------------------- GEARS


def _tiny_model(gene_vectors=None):
    settings = GearsSettings(hidden_size=8)
    chain = (np.array([[0, 1, 2], [1, 2, 0]]), np.ones(3, np.float32))
    return GearsModel(3, 4, chain, (np.array([[0, 1], [1, 0]]), np.ones(2, np.float32)), settings, gene_vectors)


def test_gears_model_adds_its_output_to_the_control_profile():
    torch.manual_seed(0)
    model = _tiny_model().eval()
    x = torch.rand(4, 3)
    out_a = model(x, [[0], [1], [0, 1], []])
    assert out_a.shape == (4, 3)
    # the control row gets no perturbation embedding; perturbed rows differ from it
    assert not torch.allclose(out_a[0], out_a[1])
    # the control profile enters only as the residual: shifting it shifts every prediction alike
    shifted = model(x + 1.0, [[0], [1], [0, 1], []])
    assert torch.allclose(shifted - out_a, torch.ones(4, 3), atol=1e-5)


def test_genecompass_vectors_enter_through_a_learned_projection():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], np.float32)
    missing = np.array([False, False, True])
    layer = ProjectedEmbedding(vectors, missing, hidden=4)
    out = layer(torch.arange(3))
    assert out.norm(dim=1).max() <= 1.0 + 1e-6
    assert any(p is layer.projection.weight for p in layer.parameters())  # trained, not fixed
    assert torch.allclose(out[2], layer.fallback[2] / layer.fallback[2].norm().clamp_min(1.0))
    other = ProjectedEmbedding(vectors[[1, 0, 2]], missing, hidden=4)
    other.load_state_dict(layer.state_dict() | {"vectors": other.vectors})
    assert not torch.allclose(other(torch.arange(2)), out[:2])  # the vectors, not only the ids, matter
    model = _tiny_model((vectors, missing))
    assert isinstance(model.gene_emb, ProjectedEmbedding)


def _pearson_delta(prep, method, predictions):
    table = metrics.evaluate(predictions, prep.profiles, prep.de_genes, prep.split.subgroup)
    return table["pearson_delta"].mean()


@pytest.fixture(scope="module")
def demo_sized(tmp_path_factory):
    """The demo config's experiment (50 cells per condition, 500 controls): with the 30 cells of SMALL, a
    GEARS trained on shuffled labels scored as well as the real one."""
    out = tmp_path_factory.mktemp("perturbseq_demo")
    paths = write_perturbseq(out, seed=42)
    terms = data.read_gmt(paths["go"])
    prep, _ = task.prepare(paths["h5ad"], terms, 300, 20, seed=42)
    return prep, terms


@pytest.mark.slow
def test_gears_beats_train_mean_and_a_gears_trained_on_shuffled_labels(demo_sized):
    prep, terms = demo_sized
    config = {"epochs": 10, "device": "cpu"}  # the demo config's
    gears, _ = task.run_method("gears", prep, terms, seed=0, gears_config=config)
    mean, _ = task.run_method("train_mean", prep, terms, seed=0)
    score_gears, score_mean = _pearson_delta(prep, "gears", gears), _pearson_delta(prep, "train_mean", mean)
    assert score_gears > score_mean + 0.02, (score_gears, score_mean)

    # Broken: every cell trains on a random condition's perturbation (labels shuffled). Such a model still
    # learns the average perturbed shift and GEARS's graph structure, which on unseen singles and doubles with
    # one seen gene scores about as well as the real model (0.38 against 0.38 on combo seen 1), so its overall
    # score is no fair bar (0.10-0.33 against the train mean's 0.20, by seed and thread count). What only the
    # perturbation identities teach shows on the doubles of two seen genes: 0.64-0.67 against 0.17-0.38.
    broken = task.Prepared(prep.adata.copy(), prep.split, prep.de_genes, prep.profiles)
    rng = np.random.default_rng(0)
    conditions = broken.adata.obs["condition"].to_numpy()
    perturbed = conditions != "ctrl"
    conditions[perturbed] = rng.permutation(conditions[perturbed])
    broken.adata.obs["condition"] = conditions
    predicted, _ = task.run_method("gears", broken, terms, seed=0, gears_config=config)
    seen_both = [c for c, group in prep.split.subgroup.items() if group == "combo_seen2" and c in gears.index]
    assert len(seen_both) >= 3
    real = _pearson_delta(prep, "gears", gears.loc[seen_both])
    shuffled = _pearson_delta(prep, "gears", predicted.loc[seen_both])
    assert real > shuffled + 0.15, f"a GEARS trained on shuffled labels scored {shuffled:.3f} against {real:.3f}"
