"""Tests of gene dosage-sensitivity classification (genecompass.tasks.dosage.finetune)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import random_knowledge, torch_threads

from genecompass.errors import InputError
from genecompass.knowledge.assemble import save_knowledge
from genecompass.model import (
    GeneCompassConfig,
    GeneCompassForPretraining,
    GeneCompassForTokenClassification,
)
from genecompass.tasks.dosage import finetune as dosage
from genecompass.tasks.dosage.finetune import (
    DosageSettings,
    cross_validate_finetuning,
    cross_validate_logistic,
    finetune_token_classifier,
    freeze_encoder_layers,
    gene_folds,
    knowledge_features,
    plot_roc,
    predict_token_probabilities,
    sample_cells,
    summarise,
    token_labels,
)

N_SPECIAL = 4
N_GENES = 60
VOCAB = N_SPECIAL + N_GENES
KDIM = 8
MAX_GENES = 16
N_LABELLED = 40  # tokens 4..43 carry a label (half sensitive); 44..63 are unlabelled
N_CELLS = 200


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with torch_threads(1):
        yield


# --------------------------------------------------------------------------- synthetic world


def planted_labels(seed: int = 0) -> pd.Series:
    rng = np.random.default_rng(seed)
    tokens = np.arange(N_SPECIAL, N_SPECIAL + N_LABELLED)
    label = np.zeros(N_LABELLED, dtype=int)
    label[rng.permutation(N_LABELLED)[:N_LABELLED // 2]] = 1
    return pd.Series(label, index=pd.Index(tokens, name="token_id"), name="label")


def planted_knowledge(labels: pd.Series, offset: float = 3.0):
    """Random knowledge in which every sensitive gene's vectors (all kinds) share a direction."""
    knowledge = random_knowledge(VOCAB, KDIM, seed=1, coverage=1.0)
    direction = np.random.default_rng(2).normal(size=KDIM)
    direction /= np.linalg.norm(direction)
    sensitive = labels.index[labels == 1].to_numpy()
    for kind in knowledge.kinds:
        knowledge.matrices[kind][sensitive] += (offset * direction).astype(np.float32)
    return knowledge


def write_cells(path, cells: list[list[int]], seed: int = 0):
    """A tokenized shard of the given ranked token lists (values decreasing with rank)."""
    from datasets.arrow_writer import ArrowWriter

    from genecompass.corpus import load_tokenized
    from genecompass.tokenize import shard_features

    rng = np.random.default_rng(seed)
    writer = ArrowWriter(features=shard_features(), path=str(path))
    for i, tokens in enumerate(cells):
        values = np.sort(rng.uniform(0.5, 4.0, size=len(tokens)))[::-1]
        writer.write({"input_ids": [int(t) for t in tokens], "values": values.tolist(), "length": len(tokens),
                      "species": "human", "sample": "s1", "cell_id": f"c{i}"})
    writer.finalize()
    writer.close()
    return load_tokenized([path])


def random_cells(n: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [(N_SPECIAL + rng.permutation(N_GENES)[:rng.integers(10, 21)]).tolist() for _ in range(n)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("dosage")
    labels = planted_labels()
    knowledge = planted_knowledge(labels)
    config = GeneCompassConfig.preset("tiny", vocab_size=VOCAB, max_position_embeddings=MAX_GENES + 1,
                                      knowledge_dim=KDIM)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = GeneCompassForPretraining(config)
    model.set_knowledge(knowledge)
    model.save_pretrained(root / "model")
    save_knowledge(knowledge, root / "knowledge.safetensors")
    dataset = write_cells(root / "s1.arrow", random_cells(N_CELLS))
    return {"root": root, "labels": labels, "knowledge": knowledge, "model_dir": root / "model",
            "knowledge_path": root / "knowledge.safetensors", "dataset": dataset}


def fast_settings(**overrides) -> DosageSettings:
    values = {"n_cells": N_CELLS, "n_folds": 5, "lr": 2e-3, "epochs": 3, "batch_size": 16, "device": "cpu",
              "seed": 0}
    values.update(overrides)
    return DosageSettings(**values)


@pytest.fixture(scope="module")
def pretrained_cv(world):
    with torch.random.fork_rng():
        state = torch.get_rng_state()
        result = cross_validate_finetuning(world["dataset"], world["labels"], world["model_dir"],
                                           init="pretrained", settings=fast_settings())
        assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left alone
    return result


def occurrences(dataset, rows, tokens, max_length: int) -> set[tuple[int, int]]:
    """(row, token) of every occurrence of ``tokens`` within the first ``max_length`` genes, by brute force."""
    tokens = {int(t) for t in tokens}
    found = set()
    for r in rows:
        cell = dataset[int(r)]
        for t in cell["input_ids"][:min(cell["length"], max_length)]:
            if int(t) in tokens:
                found.add((int(r), int(t)))
    return found


# --------------------------------------------------------------------------- labels, folds, cells


def test_token_labels_normalises_and_rejects_bad_labels():
    labels = token_labels(pd.Series([True, False, 1.0], index=["7", 5, 6]))
    assert labels.index.tolist() == [5, 6, 7] and labels.tolist() == [0, 1, 1]
    assert labels.index.name == "token_id" and labels.dtype == np.int64
    with pytest.raises(InputError, match="not 0 or 1"):
        token_labels(pd.Series([0, 1, 2], index=[4, 5, 6]))
    with pytest.raises(InputError, match="not 0 or 1"):
        token_labels(pd.Series(["yes", 0, 1], index=[4, 5, 6]))
    with pytest.raises(InputError, match="labelled twice"):
        token_labels(pd.Series([0, 1, 1], index=[4, 5, 5]))
    with pytest.raises(InputError, match="token ids"):
        token_labels(pd.Series([0, 1], index=["TP53", 5]))
    with pytest.raises(InputError, match="every gene is labelled 1"):
        token_labels(pd.Series([1, 1], index=[4, 5]))
    with pytest.raises(InputError, match="n_folds"):
        DosageSettings(n_folds=1)
    with pytest.raises(InputError, match="lr"):
        DosageSettings(lr=0.0)


def test_gene_folds_partition_genes_with_class_balance():
    rng = np.random.default_rng(3)
    label = np.r_[np.ones(23, dtype=int), np.zeros(17, dtype=int)]
    labels = pd.Series(rng.permutation(label), index=rng.permutation(np.arange(100, 140)))
    folds = gene_folds(labels, 5, seed=0)
    assert len(folds) == 5
    tested = np.concatenate(folds)
    assert len(tested) == len(set(tested)) == 40  # no gene in two test folds
    assert set(tested) == set(labels.index)  # every gene tested once
    for test in folds:
        assert np.all(np.diff(test) > 0)
        n_sensitive = int(labels.loc[test].sum())
        assert n_sensitive in (4, 5) and len(test) - n_sensitive in (3, 4)  # 23/5 and 17/5, rounded either way
    assert all(np.array_equal(a, b) for a, b in zip(folds, gene_folds(labels, 5, seed=0)))
    assert not all(np.array_equal(a, b) for a, b in zip(folds, gene_folds(labels, 5, seed=1)))
    with pytest.raises(InputError, match="4 genes of class 0"):
        gene_folds(pd.Series([0] * 4 + [1] * 9, index=range(4, 17)), 5, seed=0)


def test_sample_cells_keeps_cells_with_a_labelled_gene_within_max_length(tmp_path):
    labels = pd.Series([1, 0], index=[10, 11])
    cells = []
    for i in range(60):
        filler = [20 + (j + i) % 30 for j in range(12)]
        if i % 3 == 0:    # labelled gene at rank 2: qualifies
            cells.append(filler[:2] + [10 + i % 2] + filler[2:])
        elif i % 3 == 1:  # labelled gene at rank 9, beyond max_length 8: does not qualify
            cells.append(filler[:9] + [11] + filler[9:])
        else:             # no labelled gene at all
            cells.append(filler)
    dataset = write_cells(tmp_path / "cells.arrow", cells)
    qualifying = np.arange(0, 60, 3)
    everything = sample_cells(dataset, labels, n_cells=1000, max_length=8, seed=0)
    assert np.array_equal(everything, qualifying)
    assert np.array_equal(sample_cells(dataset, labels, n_cells=1000, max_length=10, seed=0),
                          np.sort(np.r_[np.arange(0, 60, 3), np.arange(1, 60, 3)]))  # rank 9 is now inside
    capped = sample_cells(dataset, labels, n_cells=7, max_length=8, seed=0)
    assert len(capped) == 7 and set(capped) <= set(qualifying) and np.all(np.diff(capped) > 0)
    assert np.array_equal(capped, sample_cells(dataset, labels, n_cells=7, max_length=8, seed=0))
    assert not np.array_equal(capped, sample_cells(dataset, labels, n_cells=7, max_length=8, seed=1))
    with pytest.raises(InputError, match="none of the 60 cells"):
        sample_cells(dataset, pd.Series([1, 0], index=[60, 61]), n_cells=10, max_length=8, seed=0)


# --------------------------------------------------------------------------- fine-tuning


def test_finetune_then_predict_every_occurrence(world):
    dataset, labels = world["dataset"], world["labels"]
    rows = np.arange(0, N_CELLS, 2)
    settings = fast_settings(epochs=1)
    train = labels.iloc[:30]
    with torch.random.fork_rng():
        state = torch.get_rng_state()
        model = finetune_token_classifier(dataset, rows, train, world["model_dir"], settings=settings)
        assert torch.equal(torch.get_rng_state(), state)
    assert isinstance(model, GeneCompassForTokenClassification) and not model.training
    assert model.config.num_labels == 2
    held_out = labels.index[30:]
    predicted = predict_token_probabilities(model, dataset, rows, held_out, MAX_GENES, batch_size=7)
    assert list(predicted.columns) == ["row", "token_id", "probability"]
    assert set(zip(predicted["row"], predicted["token_id"])) == occurrences(dataset, rows, held_out, MAX_GENES)
    assert len(predicted) == len(occurrences(dataset, rows, held_out, MAX_GENES))  # once per occurrence
    assert predicted["probability"].between(0, 1).all() and np.all(np.diff(predicted["row"]) >= 0)
    again = predict_token_probabilities(model, dataset, rows, held_out, MAX_GENES, batch_size=64)
    pd.testing.assert_frame_equal(predicted, again, check_exact=False, atol=1e-5)  # batching does not matter
    with pytest.raises(InputError, match="max_length"):
        finetune_token_classifier(dataset, rows, train, world["model_dir"],
                                  settings=fast_settings(max_length=MAX_GENES + 1))


def test_finetuning_learns_a_planted_signal_that_generalises_across_genes(world, pretrained_cv):
    folds, predictions = pretrained_cv
    assert list(folds.columns) == ["fold", "n_train_genes", "n_test_genes", "n_test_tokens", "auc_token", "auc_gene"]
    assert folds["fold"].tolist() == [0, 1, 2, 3, 4]
    assert (folds["n_train_genes"] + folds["n_test_genes"] == N_LABELLED).all()
    assert folds["auc_gene"].mean() > 0.75, folds
    assert folds["auc_token"].mean() > 0.75, folds
    assert list(predictions.columns) == ["fold", "token_id", "label", "probability", "level"]
    genes = predictions[predictions["level"] == "gene"]
    tokens = predictions[predictions["level"] == "token"]
    assert sorted(genes["token_id"]) == sorted(world["labels"].index)  # every gene tested exactly once
    assert (genes.set_index("token_id")["label"] == world["labels"].loc[genes["token_id"]]).all()
    assert tokens.groupby("fold").size().tolist() == folds["n_test_tokens"].tolist()
    mean = tokens.groupby(["fold", "token_id"])["probability"].mean()
    assert np.allclose(genes.set_index(["fold", "token_id"])["probability"].loc[mean.index], mean)
    for fold, test in enumerate(gene_folds(world["labels"], 5, seed=0)):
        assert set(genes.loc[genes["fold"] == fold, "token_id"]) == set(test)


def test_same_seed_gives_identical_predictions(world, pretrained_cv):
    again = cross_validate_finetuning(world["dataset"], world["labels"], world["model_dir"], init="pretrained",
                                      settings=fast_settings())
    pd.testing.assert_frame_equal(again[0], pretrained_cv[0])
    pd.testing.assert_frame_equal(again[1], pretrained_cv[1])


def test_test_genes_labels_never_reach_training(world, monkeypatch):
    seen = {"fold_labels": [], "batches": []}
    original_finetune = dosage.finetune_token_classifier
    original_forward = GeneCompassForTokenClassification.forward

    def finetune(dataset, rows, labels, model_dir, **kwargs):
        seen["fold_labels"].append(labels.copy())
        return original_finetune(dataset, rows, labels, model_dir, **kwargs)

    def forward(self, input_ids, *args, labels=None, **kwargs):
        if labels is not None:
            seen["batches"].append((len(seen["fold_labels"]) - 1, input_ids.clone(), labels.clone()))
        return original_forward(self, input_ids, *args, labels=labels, **kwargs)

    monkeypatch.setattr(dosage, "finetune_token_classifier", finetune)
    monkeypatch.setattr(GeneCompassForTokenClassification, "forward", forward)
    settings = fast_settings(n_folds=2, epochs=1, n_cells=80, seed=4)
    folds, predictions = cross_validate_finetuning(world["dataset"], world["labels"], world["model_dir"],
                                                   init="random", settings=settings)
    tests = gene_folds(world["labels"], 2, seed=4)
    assert len(seen["fold_labels"]) == 2 and len(folds) == 2
    for fold, test in enumerate(tests):
        given = seen["fold_labels"][fold]
        assert not set(given.index) & set(test)  # the test genes' labels are not handed to training
        assert set(given.index) | set(test) == set(world["labels"].index)
        batches = [(ids, lab) for f, ids, lab in seen["batches"] if f == fold]
        assert batches
        ids = torch.cat([b[0].reshape(-1) for b in batches])
        targets = torch.cat([b[1].reshape(-1) for b in batches])
        at_test = torch.isin(ids, torch.as_tensor(test))
        assert bool(at_test.any())  # test genes do occur in the training cells...
        assert bool((targets[at_test] == -100).all())  # ...but their positions are ignored
        at_train = torch.isin(ids, torch.as_tensor(given.index.to_numpy()))
        assert torch.equal(targets[at_train], torch.as_tensor(world["labels"].loc[ids[at_train].numpy()].to_numpy()))
        assert bool((targets[~at_train] == -100).all())
        assert set(predictions.loc[predictions["fold"] == fold, "token_id"]) <= set(test)


# --------------------------------------------------------------------------- logistic regression baseline


def test_logistic_regression_finds_a_linear_signal_and_not_noise():
    rng = np.random.default_rng(0)
    index = pd.Index(np.arange(100, 200), name="token_id")
    X = pd.DataFrame(rng.normal(size=(100, 10)), index=index)
    labels = pd.Series((X.to_numpy() @ rng.normal(size=10) > 0).astype(int), index=index)
    folds, predictions = cross_validate_logistic(X, labels, n_folds=5, seed=0)
    assert folds["auc_gene"].mean() > 0.9, folds
    assert folds["auc_token"].isna().all() and folds["n_test_genes"].sum() == 100
    assert (predictions["level"] == "gene").all() and sorted(predictions["token_id"]) == list(index)

    noise = []
    for seed in range(5):
        features = pd.DataFrame(np.random.default_rng(seed + 10).normal(size=(100, 10)), index=index)
        noise.append(cross_validate_logistic(features, labels, n_folds=5, seed=seed)[0]["auc_gene"].mean())
    assert 0.2 <= float(np.mean(noise)) <= 0.8, noise

    # genes without a feature row are left out; a class too small for the folds is an error
    partial, _ = cross_validate_logistic(X.iloc[:60], labels, n_folds=5, seed=0)
    assert partial["n_test_genes"].sum() == 60
    with pytest.raises(InputError, match="3 genes of class 0"):
        cross_validate_logistic(X, pd.Series([0] * 3 + [1] * 97, index=index), n_folds=5, seed=0)


def test_knowledge_features_and_planted_knowledge_baseline(world):
    knowledge = world["knowledge"]
    for kind in knowledge.kinds:  # token 50 loses every kind, token 51 only the first
        knowledge.masks[kind][50] = False
    knowledge.masks[knowledge.kinds[0]][51] = False
    path = world["root"] / "knowledge_masked.safetensors"
    save_knowledge(knowledge, path)
    for kind in knowledge.kinds:
        knowledge.masks[kind][50] = True
    knowledge.masks[knowledge.kinds[0]][51] = True

    features = knowledge_features(path, [52, 50, 51, 52, 4, 1000])
    assert features.index.tolist() == [4, 51, 52]  # sorted; 50 (no knowledge) and 1000 (outside) dropped
    assert features.shape[1] == len(knowledge.kinds) * KDIM
    first = knowledge.kinds[0]
    assert np.allclose(features.loc[51, [f"{first}_{i}" for i in range(KDIM)]], 0.0)
    second = knowledge.kinds[1]
    assert np.allclose(features.loc[51, [f"{second}_{i}" for i in range(KDIM)]], knowledge.matrices[second][51])

    labels = world["labels"]
    folds, _ = cross_validate_logistic(knowledge_features(world["knowledge_path"], labels.index), labels, 5, 0)
    assert folds["auc_gene"].mean() > 0.9, folds
    with pytest.raises(InputError, match="none of the 2 tokens"):
        knowledge_features(path, [50, 1000])


# --------------------------------------------------------------------------- reporting


def test_summarise_and_plot_roc(tmp_path, pretrained_cv):
    a = pd.DataFrame({"fold": [0, 1, 2], "auc_gene": [0.8, 0.9, 1.0], "auc_token": [0.7, np.nan, 0.9]})
    b = pd.DataFrame({"fold": [0, 1], "auc_gene": [0.6, 0.6], "auc_token": [np.nan, np.nan]})
    table = summarise({"gc": a, "lr": b}).set_index(["method", "metric"])
    assert table.loc[("gc", "auc_gene"), "mean"] == pytest.approx(0.9)
    assert table.loc[("gc", "auc_gene"), "sd"] == pytest.approx(0.1)
    assert table.loc[("gc", "auc_token"), "n_folds"] == 2
    assert table.loc[("gc", "auc_token"), "mean"] == pytest.approx(0.8)
    assert table.loc[("lr", "auc_gene"), "sd"] == 0.0
    assert table.loc[("lr", "auc_token"), "n_folds"] == 0 and np.isnan(table.loc[("lr", "auc_token"), "mean"])

    tokens_only = pretrained_cv[1][pretrained_cv[1]["level"] == "token"]
    path = tmp_path / "roc.png"
    plot_roc({"genecompass": pretrained_cv[1], "tokens only": tokens_only}, path, title="dosage")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roc.png"]  # nothing half-written left


@pytest.mark.parametrize("n_layers, frozen_layers", [(0, 0), (1, 1), (-1, 2)])
def test_freeze_layers_keeps_the_frozen_weights(world, n_layers, frozen_layers):
    from genecompass.model import GeneCompassForTokenClassification
    from genecompass.tasks.annotation.finetune import build_classifier

    model = build_classifier(world["model_dir"], ["a", "b"], model_class=GeneCompassForTokenClassification)
    freeze_encoder_layers(model.genecompass, n_layers)
    encoder = model.genecompass
    embeddings_frozen = not any(p.requires_grad for p in encoder.embeddings.parameters())
    assert embeddings_frozen == (frozen_layers > 0)
    for index, layer in enumerate(encoder.layers):
        assert all(p.requires_grad == (index >= frozen_layers) for p in layer.parameters())
    assert all(p.requires_grad for p in model.classifier.parameters())
    # a frozen encoder keeps its weights through fine-tuning; only the head moves
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trained = finetune_token_classifier(world["dataset"], np.arange(40), world["labels"], world["model_dir"],
                                        settings=fast_settings(epochs=1, freeze_layers=n_layers))
    after = trained.state_dict()
    layer0 = "genecompass.layers.0."
    moved = [k for k in after if k.startswith(layer0) and not torch.equal(after[k], before[k])]
    assert (not moved) == (frozen_layers >= 1)
    assert not torch.equal(after["classifier.weight"], before["classifier.weight"])
