"""Tests of the UGRN feature extractors and translator (genecompass.tasks.grn.ugrn)."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_pretraining_model, torch_threads

from genecompass.embed import static_gene_embeddings
from genecompass.errors import InputError
from genecompass.model import GeneCompassForPretraining
from genecompass.tasks.grn import ugrn
from genecompass.tasks.grn.ugrn import (
    embedding_pair_features,
    ensemble_logits,
    gradient_trajectory,
    leave_one_dataset_out,
    mean_profile,
    plan_windows,
    predict_translator,
    sample_training_pairs,
    train_translator,
    translator_scores,
    virtual_value_perturbation,
    zero_out_features,
)

VOCAB = 40
KDIM = 8
HUMAN = 2


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def model() -> GeneCompassForPretraining:
    return tiny_pretraining_model(VOCAB, KDIM)


def predictions(model, tokens, values, present=None) -> np.ndarray:
    """The model's value predictions for one hand-ranked cell (tokens already in rank order)."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([tokens]), values=torch.tensor([values], dtype=torch.float32),
                    species_ids=torch.tensor([HUMAN]))
    return out.value_predictions[0].double().numpy()


# --------------------------------------------------------------------------- windows


def test_plan_windows_holds_every_pair_once_within_capacity():
    rng = np.random.default_rng(0)
    genes = rng.permutation(np.arange(4, 34))
    pairs = np.array([(a, b) for a in genes[:6] for b in genes if a != b])
    windows = plan_windows(genes, pairs, capacity=8)
    assert len(windows) > 1
    seen = np.concatenate([w.pair_rows for w in windows])
    assert np.array_equal(np.sort(seen), np.arange(len(pairs)))   # each pair exactly once
    for window in windows:
        assert 2 <= len(window.tokens) <= 8
        assert np.array_equal(window.tokens, np.sort(window.tokens))  # all-equal values: token order
        assert np.isin(pairs[window.pair_rows], window.tokens).all()
    single = plan_windows(genes[:8], pairs[:3], capacity=8)
    assert len(single) == 1 and np.array_equal(single[0].tokens, np.sort(genes[:8]))


def test_plan_windows_orders_by_value_then_token():
    genes = np.array([10, 5, 7, 9])
    values = np.array([1.0, 2.0, 1.0, 3.0])
    (window,) = plan_windows(genes, np.array([[10, 5]]), capacity=8, values=values)
    assert window.tokens.tolist() == [9, 5, 7, 10]


# --------------------------------------------------------------------------- embedding baseline


def test_embedding_features_sum_concat_and_sources(model):
    genes = np.array([5, 8, 13, 21])
    pairs = np.array([[5, 8], [13, 21], [8, 5]])
    static = static_gene_embeddings(model.genecompass, genes).astype(np.float64)
    summed = embedding_pair_features(model, genes, pairs)
    assert summed.shape == (3, model.config.hidden_size)
    assert np.allclose(summed[0], static[0] + static[1], atol=1e-6)
    assert np.allclose(summed[0], summed[2])  # Eq. 7 is symmetric
    concat = embedding_pair_features(model, genes, pairs, combine="concat")
    d = model.config.hidden_size
    assert concat.shape == (3, 3 * d)
    assert np.allclose(concat[0, :d], static[0], atol=1e-6) and np.allclose(concat[0, d:2 * d], static[1], atol=1e-6)
    assert np.allclose(concat[0, 2 * d:], static[0] * static[1], atol=1e-6)
    assert not np.allclose(concat[0], concat[2])  # the concatenation keeps the direction
    ids = embedding_pair_features(model, genes, pairs[:1], gene_vectors="id")
    weight = model.genecompass.embeddings.gene_embeddings.weight.detach().double().numpy()
    assert np.allclose(ids[0], weight[5] + weight[8], atol=1e-6)
    both = embedding_pair_features(model, genes, pairs, both_directions=True)
    assert both.shape == (3, 2 * d)


def test_embedding_features_from_a_gene_table(model):
    table = pd.DataFrame({"species": ["human", "human", "mouse", "human"], "token_id": [5, 8, 5, 13],
                          "dim_0": [1.0, 2.0, 100.0, 4.0], "dim_1": [0.0, 1.0, 100.0, 1.0]})
    got = embedding_pair_features(model, [5, 8, 13], [[5, 8], [8, 13]], species="human", gene_vectors=table)
    assert np.allclose(got, [[3.0, 1.0], [6.0, 2.0]])
    with pytest.raises(InputError, match="no vector for token 21"):
        embedding_pair_features(model, [5, 21], [[5, 21]], species="human", gene_vectors=table)


# --------------------------------------------------------------------------- VVP


def test_vvp_is_zero_when_the_target_value_is_the_base(model):
    genes = np.arange(4, 16)
    pairs = np.array([[4, 9], [9, 4], [12, 15], [6, 7]])
    flat = virtual_value_perturbation(model, genes, pairs, base_value=0.7, target_values=[0.7, 0.7], species="human")
    assert flat.shape == (4, 2)
    assert np.allclose(flat, 0.0, atol=1e-6)
    moved = virtual_value_perturbation(model, genes, pairs, base_value=0.7, target_values=[0.2, 3.0],
                                       species="human")
    assert np.abs(moved).max() > 1e-3


def test_vvp_matches_hand_built_virtual_cells(model):
    genes = [9, 5, 12, 7, 20, 15]          # caller order is irrelevant: ties rank by token id
    pairs = np.array([[12, 7], [5, 20]])
    base, targets = 0.6, [0.3, 2.0]
    got = virtual_value_perturbation(model, genes, pairs, base_value=base, target_values=targets, species="human")
    ordered = sorted(genes)
    reference = predictions(model, ordered, [base] * len(ordered))
    for row, (source, target) in enumerate(pairs):
        others = [g for g in ordered if g != source]
        for m, value in enumerate(targets):
            # Above the base the source ranks first, below it last.
            tokens = [source] + others if value > base else others + [source]
            values = [value] + [base] * len(others) if value > base else [base] * len(others) + [value]
            expected = predictions(model, tokens, values)[tokens.index(target)] - reference[ordered.index(target)]
            assert got[row, m] == pytest.approx(expected, abs=1e-5)
    again = virtual_value_perturbation(model, genes[::-1], pairs, base_value=base, target_values=targets,
                                       species="human", batch_size=1)
    assert np.allclose(got, again, atol=1e-6)  # deterministic, independent of gene order and batching


def test_vvp_chunks_large_gene_sets_into_windows(model):
    rng = np.random.default_rng(1)
    genes = np.arange(4, 28)                  # 24 genes, windows of at most 8
    pairs = np.array([rng.choice(genes, 2, replace=False) for _ in range(20)])
    pairs = np.unique(pairs, axis=0)
    chunked = virtual_value_perturbation(model, genes, pairs, target_values=[0.3, 2.0], species="human", window=8)
    assert chunked.shape == (len(pairs), 2)
    windows = plan_windows(genes, pairs, 8)
    assert len(windows) > 1
    for window in windows:
        alone = virtual_value_perturbation(model, window.tokens, pairs[window.pair_rows], target_values=[0.3, 2.0],
                                           species="human")
        assert np.allclose(chunked[window.pair_rows], alone, atol=1e-6)
    with pytest.raises(InputError, match="window"):
        virtual_value_perturbation(model, genes, pairs, species="human", window=40)


def test_both_directions_appends_the_reverse_pair(model):
    genes = np.arange(4, 12)
    pairs = np.array([[4, 7], [10, 5]])
    both = virtual_value_perturbation(model, genes, pairs, target_values=[2.0], species="human",
                                      both_directions=True)
    forward = virtual_value_perturbation(model, genes, pairs, target_values=[2.0], species="human")
    reverse = virtual_value_perturbation(model, genes, pairs[:, ::-1], target_values=[2.0], species="human")
    assert np.allclose(both, np.hstack([forward, reverse]), atol=1e-6)


# --------------------------------------------------------------------------- GDT


def test_gdt_matches_finite_differences(model):
    double = copy.deepcopy(model).double()
    genes = [6, 9, 11, 14, 17, 23]
    pairs = np.array([[9, 14], [23, 6], [11, 17]])
    levels = [0.5, 1.5]
    got = gradient_trajectory(double, genes, pairs, base_values=levels, species="human")
    assert got.shape == (3, 2)
    h = 1e-3
    for row, (source, target) in enumerate(pairs):
        for t, level in enumerate(levels):
            up, down = [level] * len(genes), [level] * len(genes)
            up[genes.index(source)] += h     # rank order held fixed, as autograd sees it
            down[genes.index(source)] -= h
            difference = predictions(double, genes, up) - predictions(double, genes, down)
            estimate = difference[genes.index(target)] / (2 * h)
            assert got[row, t] == pytest.approx(estimate, rel=1e-3, abs=1e-6)
    assert np.abs(got).max() > 1e-3
    batched = gradient_trajectory(double, genes, pairs, base_values=levels, species=HUMAN, batch_size=1)
    assert np.allclose(got, batched, atol=1e-6)


def test_gdt_chunked_and_bidirectional_shapes(model):
    genes = np.arange(4, 24)
    pairs = np.array([[4, 23], [5, 6], [10, 20]])
    first = gradient_trajectory(model, genes, pairs, base_values=[0.7, 2.0], species="human", window=6,
                                both_directions=True)
    assert first.shape == (3, 4)
    assert np.array_equal(first, gradient_trajectory(model, genes, pairs, base_values=[0.7, 2.0], species="human",
                                                     window=6, both_directions=True))
    assert not model.training and all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------- zero-out baseline


def test_mean_profile_counts_absent_genes_as_zero():
    batch = {"input_ids": torch.tensor([[5, 7, 0], [7, 9, 5]]),
             "values": torch.tensor([[2.0, 1.0, 0.0], [3.0, 1.0, 0.5]]),
             "attention_mask": torch.tensor([[1, 1, 0], [1, 1, 1]])}
    profile = mean_profile(batch, genes=[5, 7, 9, 11])
    assert profile.to_dict() == pytest.approx({5: 1.25, 7: 2.0, 9: 0.5, 11: 0.0})


def test_zero_out_removes_the_source_from_the_mean_cell(model):
    profile = pd.Series({5: 1.2, 9: 2.5, 12: 0.4, 20: 1.2, 31: 0.9})
    pairs = np.array([[9, 12], [20, 5], [12, 31]])
    got = zero_out_features(model, profile, pairs, species="human")
    assert got.shape == (3, 1)
    ranked = [9, 5, 20, 31, 12]  # value descending, ties (5, 20) by token id
    values = [profile[t] for t in ranked]
    full = predictions(model, ranked, values)
    for row, (source, target) in enumerate(pairs):
        kept = [t for t in ranked if t != source]
        removed = predictions(model, kept, [profile[t] for t in kept])
        assert got[row, 0] == pytest.approx(full[ranked.index(target)] - removed[kept.index(target)], abs=1e-5)
    batch = {"input_ids": torch.tensor([[9, 5, 20, 31, 12]]), "values": torch.tensor([values], dtype=torch.float32),
             "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    assert np.allclose(zero_out_features(model, batch, pairs, species="human"), got, atol=1e-6)
    with pytest.raises(InputError, match="mean value 0"):
        zero_out_features(model, pd.Series({5: 1.0, 9: 0.0}), [[5, 9]], species="human")


# --------------------------------------------------------------------------- input errors


@pytest.mark.parametrize("genes, pairs, species, match", [
    ([5, 99], [[5, 99]], "human", "unknown token id 99"),
    ([5, 2], [[5, 2]], "human", "special token"),
    ([5, 6], [], "human", "no gene pairs"),
    ([5, 6], [[5, 5]], "human", "with itself"),
    ([5, 6], [[5, 7]], "human", "not among the 2 genes"),
    ([5, 6], [[5, 6]], "fish", "unknown species 'fish'"),
    ([5, 5, 6], [[5, 6]], "human", "listed twice"),
])
def test_bad_inputs_raise_input_errors(model, genes, pairs, species, match):
    for extract in (virtual_value_perturbation, gradient_trajectory):
        with pytest.raises(InputError, match=match):
            extract(model, genes, pairs, species=species)
    if species == "human":
        with pytest.raises(InputError, match=match):
            embedding_pair_features(model, genes, pairs)


def test_bad_values_and_models_raise_input_errors(model):
    with pytest.raises(InputError, match="finite and positive"):
        virtual_value_perturbation(model, [5, 6], [[5, 6]], target_values=[0.0, 1.0], species="human")
    with pytest.raises(InputError, match="no value head"):
        virtual_value_perturbation(model.genecompass, [5, 6], [[5, 6]], species="human")


# --------------------------------------------------------------------------- translator


def planted(n: int, seed: int, sign: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Features whose label is the sign of a fixed linear rule, plus noise dimensions."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    return x, (sign * (x[:, 0] + 0.5 * x[:, 1]) > 0).astype(int)


@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_translator_recovers_a_planted_rule(kind):
    x_train, y_train = planted(400, 0)
    x_test, y_test = planted(300, 1)
    translator = train_translator(x_train, y_train, kind=kind, seed=0)
    logits = predict_translator(translator, x_test)
    assert translator_scores(y_test, logits)["auroc"] > 0.9
    probability = predict_translator(translator, x_test, output="probability")
    assert np.allclose(probability, translator.predict_proba(x_test)[:, 1], atol=1e-6)
    again = predict_translator(train_translator(x_train, y_train, kind=kind, seed=0), x_test)
    assert np.array_equal(logits, again)
    with pytest.raises(InputError, match="feature columns"):
        predict_translator(translator, x_test[:, :3])


def test_translator_rejects_single_class_labels():
    x, _ = planted(20, 0)
    with pytest.raises(InputError, match="both classes"):
        train_translator(x, np.ones(20, dtype=int))
    with pytest.raises(InputError, match="unknown translator"):
        train_translator(*planted(20, 0), kind="forest")


def test_leave_one_dataset_out_never_trains_on_the_held_out_dataset(monkeypatch):
    datasets = {"a": planted(300, 0), "b": planted(300, 1), "flipped": planted(300, 2, sign=-1.0)}
    trained_on = []
    original = ugrn.train_translator

    def spy(features, labels, kind="logistic", seed=0):
        trained_on.append(next(name for name, (x, _) in datasets.items() if np.array_equal(x, features)))
        return original(features, labels, kind=kind, seed=seed)

    monkeypatch.setattr(ugrn, "train_translator", spy)
    table, logits = leave_one_dataset_out(datasets, kind="logistic", seed=0, return_logits=True)
    assert trained_on == ["a", "b", "flipped"]          # one translator per training dataset, on it alone
    assert len(table) == 6 and (table["train_dataset"] != table["test_dataset"]).all()
    assert set(zip(table["train_dataset"], table["test_dataset"])) == {
        (a, b) for a in datasets for b in datasets if a != b}
    auroc = table.set_index(["train_dataset", "test_dataset"])["auroc"]
    # The flipped dataset's rule is the opposite: had it been in the training data, these would not be ~0.
    assert auroc["a", "b"] > 0.9 and auroc["a", "flipped"] < 0.1 and auroc["flipped", "a"] < 0.1
    assert logits["a", "b"].shape == (300,)
    assert translator_scores(datasets["b"][1], logits["a", "b"])["auroc"] == pytest.approx(auroc["a", "b"])


def test_ensemble_averages_logits():
    assert np.allclose(ensemble_logits([1.0, -2.0], [3.0, 0.0]), [2.0, -1.0])
    with pytest.raises(InputError, match="shapes differ"):
        ensemble_logits([1.0, 2.0], [1.0])
    with pytest.raises(InputError, match="no logits"):
        ensemble_logits()


# --------------------------------------------------------------------------- training pairs


def test_sample_training_pairs_is_balanced_seeded_and_restricted_to_tokens():
    network = pd.DataFrame({"Gene1": ["T1", "T1", "T2", "T2", "T1", "T3"],
                            "Gene2": ["G1", "G2", "G1", "NOTOKEN", "T1", "G3"]})
    tokens = {"T1": 10, "T2": 11, "T3": 12, "G1": 20, "G2": 21, "G3": 22, "G4": 23, "G5": 24}
    pairs = sample_training_pairs(network, tokens, seed=0)
    positives = pairs[pairs["label"] == 1]
    negatives = pairs[pairs["label"] == 0]
    assert set(zip(positives["source"], positives["target"])) == {("T1", "G1"), ("T1", "G2"), ("T2", "G1"),
                                                                  ("T3", "G3")}
    assert len(negatives) == len(positives)
    truth = set(zip(network["Gene1"], network["Gene2"]))
    for source, target in zip(negatives["source"], negatives["target"]):
        assert source in {"T1", "T2", "T3"} and source != target and (source, target) not in truth
    assert (pairs["source_token"] == pairs["source"].map(tokens)).all()
    assert (pairs["target_token"] == pairs["target"].map(tokens)).all()
    assert pairs.attrs["n_truth_dropped"] == 1
    assert pairs.equals(sample_training_pairs(network, tokens, seed=0))
    assert (sample_training_pairs(network, tokens, negative_ratio=2, seed=0)["label"] == 0).sum() == 8
    only_t1 = sample_training_pairs(network, tokens, tfs=["T1"], seed=3)
    assert set(only_t1["source"]) == {"T1"}
    with pytest.raises(InputError, match="share a token"):
        sample_training_pairs(network, {**tokens, "G6": 24})
