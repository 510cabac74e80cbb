"""CPA: counterfactual dose response on a planted Hill-curve data set, the adversary's effect,
the dosers, the GeneCompass gene-embedding readout, seeding and input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import torch_threads

from genecompass.tasks.cpa.model import Cpa, CpaSettings, GeneEmbeddingReadout

# drug -> (EC50, amplitude, responding genes): Hill curves (coefficient 2) of different EC50 on disjoint genes.
DRUGS = {"drugA": (0.7, 2.0, slice(0, 10)), "drugB": (2.0, 2.0, slice(10, 20)), "drugC": (5.0, -1.5, slice(20, 30))}
DOSES = [0.5, 1.0, 2.0, 5.0, 10.0]
N_GENES = 60
HELD_OUT = ("drugB", 5.0)  # an unseen dose of a seen drug, between two seen doses
# Small networks, a faster doser and a stronger adversarial weight than the defaults, so that a run of a
# few thousand steps disentangles (checked over seeds 0-12).
FAST = {"latent_dim": 16, "encoder_width": 64, "decoder_width": 64, "encoder_depth": 2, "decoder_depth": 2,
        "batch_size": 32, "doser_lr": 3e-2, "reg_adversary": 10.0}
LONG = {**FAST, "epochs": 150, "patience": 150}


def hill(dose, ec50):
    return dose ** 2 / (dose ** 2 + ec50 ** 2)


def make_data(seed: int = 0, per_condition: int = 30, n_control: int = 60, noise: float = 0.2):
    """Two cell types (B has 15 genes shifted up), three drugs at five doses, Gaussian noise."""
    rng = np.random.default_rng(seed)
    base = {"A": rng.uniform(1.0, 3.0, N_GENES)}
    base["B"] = base["A"].copy()
    base["B"][30:45] += 1.0
    X, drugs, doses, cell_types = [], [], [], []
    for cell_type, mean in base.items():
        X.append(mean + noise * rng.standard_normal((n_control, N_GENES)))
        drugs += ["control"] * n_control
        doses += [0.0] * n_control
        cell_types += [cell_type] * n_control
        for drug, (ec50, amplitude, genes) in DRUGS.items():
            for dose in DOSES:
                treated = mean.copy()
                treated[genes] += amplitude * hill(dose, ec50)
                X.append(treated + noise * rng.standard_normal((per_condition, N_GENES)))
                drugs += [drug] * per_condition
                doses += [dose] * per_condition
                cell_types += [cell_type] * per_condition
    return np.vstack(X).astype(np.float32), np.array(drugs), np.array(doses), np.array(cell_types)


def split(drugs, doses, seed: int = 0):
    """The held-out condition is the test set; 10% of the rest validates, the others train."""
    held = (drugs == HELD_OUT[0]) & (doses == HELD_OUT[1])
    rows = np.random.default_rng(seed).permutation(np.flatnonzero(~held))
    return rows[len(rows) // 10:], rows[:len(rows) // 10], np.flatnonzero(held)


def fit(config: dict, seed: int = 0):
    X, drugs, doses, cell_types = make_data()
    train, val, _ = split(drugs, doses)
    model = Cpa(X, drugs, doses, {"cell_type": cell_types}, CpaSettings.from_config(config, seed))
    with torch_threads(1):
        history = model.fit(train, val)
    return model, history


@pytest.fixture(scope="module")
def data():
    return make_data()


@pytest.fixture(scope="module")
def fitted():
    return fit(LONG)


@pytest.fixture(scope="module")
def fitted_without_adversary():
    return fit({**LONG, "reg_adversary": 0.0})


def controls(data, cell_type):
    X, drugs, _, cell_types = data
    return X[(drugs == "control") & (cell_types == cell_type)]


@pytest.mark.slow
def test_unseen_dose_beats_the_train_mean_of_the_drug(fitted, data):
    """The held-out dose of drug B, predicted from each cell type's controls, beats drug B's mean over its
    training doses on B's genes, in every seed; genes no drug touches stay at the cell type's own level.

    The second claim is a property of the run, not of every run: on one machine seeds 0-12 kept them within
    0.15 in every seed, on another (same code and packages, other CPU kernels) in 11 of 13 (seed 0: 0.32 for
    cell type A). So it is stated over five seeds: within 0.15 in at least four, and in the median.
    """
    X, drugs, doses, cell_types = data
    train, _, held = split(drugs, doses)
    genes = DRUGS["drugB"][2]
    untouched = []
    for seed in range(5):
        model, history = fitted if seed == 0 else fit(LONG, seed)
        assert len(history) == LONG["epochs"]
        worst = 0.0
        for cell_type in ("A", "B"):
            truth = X[held][cell_types[held] == cell_type].mean(0)
            in_train = train[(drugs[train] == "drugB") & (cell_types[train] == cell_type)]
            train_mean = X[in_train].mean(0)
            predicted, variance = model.predict(controls(data, cell_type), *HELD_OUT, {"cell_type": cell_type})
            assert predicted.shape == variance.shape == (N_GENES,) and (variance >= 1e-3).all()
            error = np.abs(predicted[genes] - truth[genes]).mean()
            baseline = np.abs(train_mean[genes] - truth[genes]).mean()
            assert error < 0.8 * baseline, (seed, cell_type, error, baseline)
            worst = max(worst, float(np.abs(predicted[30:] - truth[30:]).mean()))
        untouched.append(worst)
    assert sum(level < 0.15 for level in untouched) >= 4 and np.median(untouched) < 0.15, untouched


def test_dose_curves_and_responses_rise_monotonically_from_zero(fitted, data):
    model, _ = fitted
    grid = np.linspace(0.0, 10.0, 21)
    for drug in DRUGS:
        # f_drug and the drug's embedding can swap signs together, so the curve's magnitude is what rises.
        curve = np.abs(model.dose_curve(drug, grid))
        assert curve[0] == 0.0 and (np.diff(curve) > 0).all(), (drug, curve)
    # The decoded response of the responding genes rises along the dose grid (no dips), by at least half
    # the planted rise, for the held-out drug and the low-EC50 one.
    for drug in ("drugB", "drugA"):
        ec50, amplitude, genes = DRUGS[drug]
        response = model.dose_response(controls(data, "A"), drug, grid, {"cell_type": "A"})[:, genes].mean(1)
        assert (np.diff(response) > -0.02).all(), (drug, response)
        assert response[-1] - response[0] > 0.5 * amplitude * hill(10.0, ec50), (drug, response)


def test_adversary_takes_drug_information_out_of_the_basal_latent(fitted, fitted_without_adversary, data):
    """The adversaries' own accuracy on validation cells (CPA's training metric) is lower with the
    adversarial loss. Without it the decoder reads the drug from z_basal, so a counterfactual made
    from control cells misses the drug's effect. (A fresh linear probe still separates drugs at this
    size, with or without the adversary, so it is not used.)"""
    accuracy = {}
    errors = {}
    for name, (model, history) in {"adversary": fitted, "none": fitted_without_adversary}.items():
        accuracy[name] = np.mean([h["val_adversary_drug_accuracy"] for h in history[-20:]])
        X, drugs, doses, cell_types = data
        truth = X[(drugs == "drugA") & (doses == 10.0) & (cell_types == "A")].mean(0)
        predicted, _ = model.predict(controls(data, "A"), "drugA", 10.0, {"cell_type": "A"})
        errors[name] = np.abs(predicted[:10] - truth[:10]).mean()
    assert accuracy["adversary"] < accuracy["none"] - 0.15, accuracy
    assert errors["adversary"] < 0.5 * errors["none"], errors


def test_controls_dose_scale_and_settings(fitted, data):
    model, _ = fitted
    assert model.settings_dict()["dose_scale"] == 10.0 and model.settings_dict()["doser"] == "logsigm"
    cells = controls(data, "B")
    zero, _ = model.predict(cells, "control", 0.0, {"cell_type": "B"})
    assert np.array_equal(zero, model.predict(cells, "control", 7.0, {"cell_type": "B"})[0])
    assert np.abs(zero - cells.mean(0)).mean() < 0.15


def test_unknown_labels_and_settings_raise(fitted, data):
    model, _ = fitted
    cells = controls(data, "A")
    with pytest.raises(ValueError, match="unknown drug 'drugZ'"):
        model.predict(cells, "drugZ", 1.0, {"cell_type": "A"})
    with pytest.raises(ValueError, match="unknown drug"):
        model.dose_curve("control", np.array([1.0]))
    with pytest.raises(ValueError, match="unknown cell_type 'C'"):
        model.predict(cells, "drugA", 1.0, {"cell_type": "C"})
    with pytest.raises(ValueError, match="do not match"):
        model.predict(cells, "drugA", 1.0, {"tissue": "A"})
    with pytest.raises(ValueError, match="non-negative"):
        model.dose_response(cells, "drugA", np.array([-1.0]), {"cell_type": "A"})
    with pytest.raises(ValueError, match=r"tasks.cpa.model: unknown setting\(s\) \['epoch'\]"):
        CpaSettings.from_config({"epoch": 3}, 0)
    for bad in ({"doser": "linear"}, {"gene_decoder": "genecompass"}, {"adversary_steps": 0}):
        with pytest.raises(ValueError, match=f"tasks.cpa.model.{next(iter(bad))}"):
            CpaSettings.from_config(bad, 0)
    X, drugs, doses, cell_types = data
    with pytest.raises(ValueError, match="needs gene_vectors"):
        Cpa(X, drugs, doses, {"cell_type": cell_types}, CpaSettings.from_config({"gene_decoder": "embedding"}, 0))
    with pytest.raises(ValueError, match="positive"):
        Cpa(X, drugs, np.where(drugs == "drugA", -1.0, doses), {"cell_type": cell_types}, CpaSettings())
    with pytest.raises(RuntimeError, match="fit"):
        Cpa(X, drugs, doses, {"cell_type": cell_types}, CpaSettings()).predict(cells, "drugA", 1.0,
                                                                              {"cell_type": "A"})


def test_same_seed_same_predictions_other_seed_differs(data):
    cells = controls(data, "A")
    runs = {}
    for name, seed in (("first", 3), ("again", 3), ("other", 4)):
        model, history = fit({**FAST, "epochs": 3}, seed)
        runs[name] = (model.predict(cells, "drugB", 3.0, {"cell_type": "A"}), history)
    (mean, var), history = runs["first"]
    assert np.array_equal(mean, runs["again"][0][0]) and np.array_equal(var, runs["again"][0][1])
    assert history == runs["again"][1]
    assert not np.allclose(mean, runs["other"][0][0])


@pytest.mark.parametrize("doser", ["logsigm", "sigm", "mlp"])
def test_each_doser_is_zero_at_dose_zero(doser):
    model, _ = fit({**FAST, "epochs": 2, "doser": doser})
    for drug in DRUGS:
        curve = model.dose_curve(drug, np.array([0.0, 1.0, 10.0]))
        assert curve[0] == 0.0 and np.isfinite(curve).all() and curve[2] != 0.0


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_autoencoder_and_adversary_steps_alternate_as_in_cpa(data):
    """With one batch per epoch: step 0 updates the autoencoder only, steps 1 and 2 the adversaries."""
    X, drugs, doses, cell_types = data
    train, val, _ = split(drugs, doses)
    one_batch = {**FAST, "batch_size": len(train), "epochs": 1}
    model = Cpa(X, drugs, doses, {"cell_type": cell_types}, CpaSettings.from_config(one_batch, 0))
    encoder = [p.detach().clone() for p in model.model.encoder.parameters()]
    adversary = [p.detach().clone() for p in model.model.adversary_parameters()]
    with torch_threads(1):
        model.fit(train, val)
    assert not any(torch.equal(a, b) for a, b in zip(encoder, model.model.encoder.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(adversary, model.model.adversary_parameters()))
    model = Cpa(X, drugs, doses, {"cell_type": cell_types},
                CpaSettings.from_config({**one_batch, "epochs": 3, "patience": 3}, 0))
    with torch_threads(1):
        history = model.fit(train, val)
    assert [sorted(k for k in h if k.startswith("train_")) for h in history] == [
        ["train_reconstruction"], ["train_adversary", "train_penalty"], ["train_adversary", "train_penalty"]]


def _gene_vectors(dim: int = 8):
    vectors = np.random.default_rng(1).normal(size=(N_GENES, dim)).astype(np.float32)
    vectors[1] = vectors[0]  # genes 0 and 1 share a vector
    missing = np.zeros(N_GENES, bool)
    missing[[2, 5]] = True
    vectors[missing] = np.nan  # placeholders must not matter
    return vectors, missing


def test_embedding_readout_is_built_from_the_gene_vectors(data):
    X, drugs, doses, cell_types = data
    vectors, missing = _gene_vectors()
    settings = CpaSettings.from_config({**FAST, "gene_decoder": "embedding", "epochs": 2}, 0)
    model = Cpa(X, drugs, doses, {"cell_type": cell_types}, settings, (vectors, missing))
    readout = model.model.readout
    assert isinstance(readout, GeneEmbeddingReadout)
    # Registered (and handed to the autoencoder optimiser) before any forward pass.
    names = {name for name, _ in model.model.named_parameters()}
    assert {"readout.projections.0.weight", "readout.projections.1.weight", "readout.fallback",
            "readout.bias"} <= names
    assert {id(p) for p in readout.parameters()} <= {id(p) for p in model.model.autoencoder_parameters()}
    weights = readout.weights().detach()
    assert weights.shape == (2, N_GENES, FAST["decoder_width"])
    assert torch.equal(weights[:, 0], weights[:, 1]) and not torch.equal(weights[:, 0], weights[:, 3])
    assert torch.equal(weights[:, [2, 5]], readout.fallback.detach())
    scale = vectors[~missing].std() * np.sqrt(vectors.shape[1])
    expected = torch.from_numpy((vectors[3] / scale).astype(np.float32)) @ readout.projections[0].weight.detach().T
    assert torch.allclose(weights[0, 3], expected, atol=1e-6)
    # Every readout parameter receives a gradient from the reconstruction loss.
    batch = torch.as_tensor(X[:64])
    with torch_threads(1):
        z_basal = model.model.encoder(batch)
        mean, variance = model.model.decode(z_basal, model.drug[:64], model.raw_dose[:64] / 10.0,
                                            model.covariates[:64])
        F.gaussian_nll_loss(mean, batch, variance).backward()
    for name, parameter in readout.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    before = [p.detach().clone() for p in readout.parameters()]
    with torch_threads(1):
        model.fit(*split(drugs, doses)[:2])
    assert all(not torch.equal(a, b) for a, b in zip(before, readout.parameters()))
    predicted, variance = model.predict(controls(data, "A"), "drugA", 2.0, {"cell_type": "A"})
    assert np.isfinite(predicted).all() and np.isfinite(variance).all()


def test_free_decoder_ignores_gene_vectors(data):
    X, drugs, doses, cell_types = data
    model = Cpa(X, drugs, doses, {"cell_type": cell_types}, CpaSettings.from_config(FAST, 0), _gene_vectors())
    assert isinstance(model.model.readout, torch.nn.Linear)
    assert model.model.readout.out_features == 2 * N_GENES


def test_log_dose_transform_maps_the_range_onto_unit_interval():
    model, _ = fit({**FAST, "epochs": 1, "dose_transform": "log", "doser": "sigm"})
    assert model.settings_dict()["dose_floor"] == 0.5 and model.settings_dict()["dose_scale"] == 10.0
    # log10 range 0.5..10 is 1.3 decades; with one decade below the lowest dose the span is 2.3
    scaled = model._scaled(np.array([0.0, 0.5, np.sqrt(5.0), 10.0]))
    np.testing.assert_allclose(scaled, [0.0, 1 / 2.301, (1 + np.log10(np.sqrt(5.0) / 0.5)) / 2.301, 1.0], rtol=1e-3)
    curve = model.dose_curve("drugA", np.array([0.0, 0.5, 10.0]))
    assert curve[0] == 0 and np.all(np.isfinite(curve))
    with pytest.raises(ValueError, match="dose_transform"):
        CpaSettings.from_config({"dose_transform": "sqrt"}, 0)
