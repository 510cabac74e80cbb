"""Tests of single-species cell-type annotation (genecompass.tasks.annotation.finetune and .metrics)."""

from __future__ import annotations

import logging

import anndata
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import random_knowledge, torch_threads
from scipy import sparse

from genecompass.corpus import load_tokenized
from genecompass.model import (
    GeneCompassConfig,
    GeneCompassForPretraining,
    GeneCompassForSequenceClassification,
)
from genecompass.tasks.annotation.finetune import (
    UNUSED,
    AnnotationResult,
    BaselineSettings,
    FinetuneSettings,
    build_classifier,
    combine_seed_runs,
    counts_for_tokens,
    finetune_classifier,
    logistic_regression_baseline,
    obs_for_tokens,
    split_by_group,
)
from genecompass.tasks.annotation.metrics import (
    annotation_metrics,
    plot_confusion,
    row_normalise,
)

N_SPECIAL = 4
N_GENES = 60
VOCAB = N_SPECIAL + N_GENES
KDIM = 8
MAX_LENGTH = 24
TYPES = ("alpha", "beta", "gamma")
DONORS = ("D1", "D2", "D3")
CELLS_PER_TYPE = 36
PROGRAM = 12  # genes per type-specific program; genes 36..59 are shared


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread for the whole module (module-scoped, so the shared fine-tuning run uses it too)."""
    with torch_threads(1):
        yield


# --------------------------------------------------------------------------- synthetic world


def simulate_counts(seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """Three cell types with distinct gene programs in three donors with their own gene-wise batch effect."""
    rng = np.random.default_rng(seed)
    rows, obs = [], []
    for donor in DONORS:
        batch = rng.lognormal(0.0, 0.3, size=N_GENES)
        for t, cell_type in enumerate(TYPES):
            rate = np.full(N_GENES, 0.3)
            rate[3 * PROGRAM:] = 3.0
            rate[t * PROGRAM:(t + 1) * PROGRAM] = 8.0
            for i in range(CELLS_PER_TYPE):
                size = rng.lognormal(0.0, 0.3)
                rows.append(rng.poisson(rate * batch * size))
                obs.append({"cell_id": f"{donor}-{cell_type}-{i}", "cell_type": cell_type, "donor": donor,
                            "sample": f"s_{donor}"})
    counts = np.asarray(rows, dtype=np.int64)
    order = rng.permutation(len(counts))  # interleave cell types within each donor's file order
    obs = pd.DataFrame(obs).iloc[order].reset_index(drop=True)
    counts = counts[order]
    obs = obs.sort_values("donor", kind="stable")
    return counts[obs.index.to_numpy()], obs.reset_index(drop=True)


def tokenize(counts: np.ndarray) -> list[dict]:
    """Rank each cell's expressed genes (normalised value, descending) and keep the top MAX_LENGTH."""
    rows = []
    for cell in counts:
        normalised = cell / cell.sum() * 1e3
        expressed = np.flatnonzero(cell)
        order = expressed[np.argsort(-normalised[expressed], kind="stable")][:MAX_LENGTH]
        rows.append({"input_ids": (order + N_SPECIAL).tolist(), "values": np.log1p(normalised[order]).tolist(),
                     "length": len(order)})
    return rows


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Per-donor token shards and QC files built from the same counts, plus a saved pretraining model."""
    from datasets.arrow_writer import ArrowWriter

    from genecompass.tokenize import shard_features

    root = tmp_path_factory.mktemp("annotation")
    counts, obs = simulate_counts()
    tokens = tokenize(counts)
    shard_paths, qc_paths = [], []
    genes = [f"G{i:02d}" for i in range(N_GENES)]
    for donor in DONORS:
        rows = np.flatnonzero(obs["donor"].to_numpy() == donor)
        sample = f"s_{donor}"
        path = root / f"{sample}.arrow"
        writer = ArrowWriter(features=shard_features(), path=str(path))
        for r in rows:
            writer.write({**tokens[r], "species": "human", "sample": sample, "cell_id": obs.loc[r, "cell_id"]})
        writer.finalize()
        writer.close()
        shard_paths.append(path)
        keep = list(range(N_GENES))
        if donor == "D3":  # this sample's QC dropped a gene (no counts there): the join must fill zeros
            counts[rows, N_GENES - 1] = 0
            keep = keep[:-1]
        qc_rows = rows[::-1]  # QC files list cells in another order than the shards: rows are matched by ID
        qc = anndata.AnnData(X=sparse.csr_matrix(counts[np.ix_(qc_rows, keep)]),
                             obs=obs.loc[qc_rows, ["cell_type", "donor"]].set_index(
                                 obs.loc[qc_rows, "cell_id"].to_numpy()),
                             var=pd.DataFrame(index=[genes[i] for i in keep]))
        qc.obs["cell_type"] = qc.obs["cell_type"].astype("category")
        qc.uns["sample"] = sample
        qc_paths.append(root / f"{sample}.h5ad")
        qc.write_h5ad(qc_paths[-1])

    config = GeneCompassConfig.preset("tiny", vocab_size=VOCAB, max_position_embeddings=MAX_LENGTH + 1,
                                      knowledge_dim=KDIM)
    torch.manual_seed(0)
    pretrained = GeneCompassForPretraining(config)
    pretrained.set_knowledge(random_knowledge(VOCAB, KDIM))
    model_dir = root / "model"
    pretrained.save_pretrained(model_dir)
    return {"root": root, "counts": counts, "obs": obs, "genes": genes, "shards": shard_paths, "qc": qc_paths,
            "model_dir": model_dir, "pretrained": pretrained}


@pytest.fixture(scope="module")
def cells(world):
    dataset = load_tokenized(world["shards"])
    obs = obs_for_tokens(dataset, world["qc"])
    split = split_by_group(obs, "donor", test_groups=["D3"], seed=0)
    return {"dataset": dataset, "obs": obs, "split": split}


def fast_settings(**overrides) -> FinetuneSettings:
    values = {"lr": 2e-3, "epochs": 4, "patience": None, "device": "cpu", "seed": 0, "warmup_ratio": 0.1}
    values.update(overrides)
    return FinetuneSettings(**values)


@pytest.fixture(scope="module")
def finetuned(world, cells):
    with torch.random.fork_rng():
        state = torch.get_rng_state()
        result = finetune_classifier(cells["dataset"], cells["obs"]["cell_type"], cells["split"].assignment,
                                     world["model_dir"], settings=fast_settings())
        assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left alone
    return result


# --------------------------------------------------------------------------- metrics


def test_annotation_metrics_hand_example(tmp_path):
    metrics = annotation_metrics(["a", "a", "b", "b", "c"], ["a", "b", "b", "b", "a"], labels=["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    # F1: a = 0.5 (P 1/2, R 1/2), b = 0.8 (P 2/3, R 1), c = 0
    assert metrics["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert metrics["labels"] == ["a", "b", "c"]
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert {k: v["recall"] for k, v in metrics["per_class"].items()} == pytest.approx({"a": 0.5, "b": 1.0, "c": 0.0})
    assert {k: v["support"] for k, v in metrics["per_class"].items()} == {"a": 2, "b": 2, "c": 1}
    assert metrics["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert metrics["per_class"]["a"]["n_predicted"] == 2 and metrics["n_cells"] == 5

    # An unseen true label is appended and counts as an error; a class in neither truth nor predictions
    # does not enter macro-F1 (a: P 1/2, R 1, F1 2/3; d: 0).
    unseen = annotation_metrics(["a", "d"], ["a", "a"], labels=["a", "b"])
    assert unseen["labels"] == ["a", "b", "d"]
    assert unseen["accuracy"] == 0.5
    assert unseen["macro_f1"] == pytest.approx((2 / 3 + 0.0) / 2)
    assert unseen["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "n_predicted": 0}
    assert unseen["confusion_matrix"] == [[1, 0, 0], [0, 0, 0], [1, 0, 0]]
    with pytest.raises(ValueError, match="2 true labels for 3 predictions"):
        annotation_metrics(["a", "b"], ["a", "b", "b"])

    shares = row_normalise([[1, 3], [0, 0]])
    assert np.allclose(shares, [[0.25, 0.75], [0.0, 0.0]])
    path = tmp_path / "confusion.png"
    plot_confusion(metrics["confusion_matrix"], metrics["labels"], path, title="hand example")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png"]  # nothing half-written left
    with pytest.raises(ValueError, match="square"):
        plot_confusion([[1, 2]], ["a", "b"], tmp_path / "bad.png")


# --------------------------------------------------------------------------- splits


def test_split_keeps_groups_whole(cells):
    obs, split = cells["obs"], cells["split"]
    assignment = split.assignment
    assert assignment.index.equals(obs.index)
    donors = obs["donor"].to_numpy()
    assert set(assignment[donors == "D3"]) == {"test"}
    assert not (assignment[donors != "D3"] == "test").any()  # the test donor is whole and alone
    assert split.groups("test") == ["D3"] and split.groups("train") == ["D1", "D2"]
    assert split.groups("validation") == ["D1", "D2"]  # drawn from the training groups' cells
    # Stratified: round(0.1 × n) validation cells of each label (72 training-group cells per label).
    assert split.counts()["validation"].to_dict() == {"alpha": 7, "beta": 7, "gamma": 7}
    assert split.to_dict()["n_cells"] == {"train": 195, "validation": 21, "test": 108, "unused": 0}

    again = split_by_group(obs, "donor", ["D3"], seed=0)
    other = split_by_group(obs, "donor", ["D3"], seed=1)
    assert again.assignment.equals(assignment)
    assert not other.assignment.equals(assignment)
    assert (other.assignment == "test").equals(assignment == "test")

    by_groups = split_by_group(obs, "sample", "s_D3", validation_groups=["s_D2"])
    table = pd.crosstab(obs["sample"], by_groups.assignment)
    assert ((table > 0).sum(axis=1) == 1).all()  # every group lies in exactly one split
    assert by_groups.groups("train") == ["s_D1"] and by_groups.validation_fraction is None


def test_label_budget_keeps_a_seeded_few_training_cells_per_label(world, cells):
    obs, full = cells["obs"], cells["split"]
    few = split_by_group(obs, "donor", ["D3"], seed=0, train_cells_per_label=3)
    assert few.counts()["train"].to_dict() == {"alpha": 3, "beta": 3, "gamma": 3}
    # validation and test are those of the unbudgeted split; the other training cells are left out
    for part in ("validation", "test"):
        assert (few.assignment == part).equals(full.assignment == part)
    assert set(few.assignment[full.assignment == "train"]) == {"train", UNUSED}
    assert few.to_dict()["n_cells"] == {"train": 9, "validation": 21, "test": 108, UNUSED: 186}
    assert not split_by_group(obs, "donor", ["D3"], seed=1, train_cells_per_label=3).assignment.equals(few.assignment)
    # the budget is a cap: a label with fewer training cells keeps them all
    assert split_by_group(obs, "donor", ["D3"], seed=0, train_cells_per_label=1000).assignment.equals(full.assignment)
    with pytest.raises(ValueError, match="train_cells_per_label"):
        split_by_group(obs, "donor", ["D3"], train_cells_per_label=0)
    # both the fine-tuning and the baseline read only the budgeted cells
    labels = obs["cell_type"].to_numpy()
    baseline = logistic_regression_baseline(counts_for_tokens(cells["dataset"], world["qc"]), labels,
                                            few.assignment.to_numpy())
    assert baseline.info["n_cells"] == {"train": 9, "validation": 21, "test": 108}


def test_split_errors(cells, caplog):
    obs = cells["obs"]
    with pytest.raises(ValueError, match="'patient' is not an obs column"):
        split_by_group(obs, "patient", ["D3"])
    with pytest.raises(ValueError, match=r"\['D9'\] are not values of obs column 'donor'.*D1"):
        split_by_group(obs, "donor", ["D3", "D9"])
    with pytest.raises(ValueError, match="validation_groups.*'D7'"):
        split_by_group(obs, "donor", ["D3"], validation_groups=["D7"])
    with pytest.raises(ValueError, match="training split is empty"):
        split_by_group(obs, "donor", ["D1", "D2"], validation_groups=["D3"])
    with pytest.raises(ValueError, match=r"\['D3'\] of column 'donor' are also test groups"):
        split_by_group(obs, "donor", ["D3"], validation_groups=["D3"])
    with pytest.raises(ValueError, match="validation split is empty"):
        split_by_group(obs, "donor", ["D3"], validation_fraction=0.001)

    novel = obs.copy()
    novel.loc[(novel["donor"] == "D3") & (novel["cell_type"] == "gamma"), "cell_type"] = "delta"
    with pytest.raises(ValueError, match=r"test: delta \(36 cells\).*counted as errors"):
        split_by_group(novel, "donor", ["D3"])
    with caplog.at_level(logging.WARNING):
        kept = split_by_group(novel, "donor", ["D3"], allow_unseen_labels=True)
    assert kept.unseen_labels == {"test": ["delta"]} and "delta" in caplog.text
    assert (kept.assignment == "test").sum() == 108  # kept, not dropped


# --------------------------------------------------------------------------- inputs


def test_loaders_align_tokens_obs_and_counts(world, cells):
    dataset, obs = cells["dataset"], cells["obs"]
    assert len(dataset) == len(obs) == len(world["obs"])
    assert obs["cell_id"].tolist() == list(dataset["cell_id"])
    expected = world["obs"].set_index("cell_id").loc[obs["cell_id"]]
    assert obs["cell_type"].tolist() == expected["cell_type"].tolist()
    counts = counts_for_tokens(dataset, world["qc"])
    assert counts.obs_names.equals(obs.index)
    dense = counts[:, world["genes"]].X.toarray()
    rows = world["obs"].reset_index().set_index("cell_id").loc[obs["cell_id"], "index"].to_numpy()
    assert np.array_equal(dense, world["counts"][rows])
    with pytest.raises(ValueError, match="no QC file for tokenized sample 's_D3'"):
        obs_for_tokens(dataset, world["qc"][:2])


# --------------------------------------------------------------------------- models


def test_random_init_control_same_config_and_knowledge(world):
    classes = list(TYPES)
    pretrained = build_classifier(world["model_dir"], classes, init="pretrained", seed=0)
    random_a = build_classifier(world["model_dir"], classes, init="random", seed=0)
    random_b = build_classifier(world["model_dir"], classes, init="random", seed=0)
    random_c = build_classifier(world["model_dir"], classes, init="random", seed=1)
    source = world["pretrained"].genecompass
    for model in (pretrained, random_a):
        assert isinstance(model, GeneCompassForSequenceClassification)
        assert model.config.id2label == {0: "alpha", 1: "beta", 2: "gamma"} and model.config.num_labels == 3
        for kind in model.config.knowledge_kinds:  # the checkpoint's knowledge, not zeros
            buffer = getattr(model.genecompass.embeddings, f"knowledge_{kind}")
            assert torch.count_nonzero(buffer) > 0
            assert torch.equal(buffer, getattr(source.embeddings, f"knowledge_{kind}"))
            assert torch.equal(getattr(model.genecompass.embeddings, f"knowledge_{kind}_mask"),
                               getattr(source.embeddings, f"knowledge_{kind}_mask"))
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
            "max_position_embeddings", "knowledge_dim", "knowledge_kinds", "use_values", "species_token_ids")
    assert {k: getattr(random_a.config, k) for k in keys} == {k: getattr(pretrained.config, k) for k in keys}
    assert random_a.state_dict().keys() == pretrained.state_dict().keys()
    weight = "genecompass.embeddings.gene_embeddings.weight"
    assert torch.equal(pretrained.state_dict()[weight], source.state_dict()["embeddings.gene_embeddings.weight"])
    assert not torch.equal(random_a.state_dict()[weight], pretrained.state_dict()[weight])
    assert not torch.equal(random_a.genecompass.layers[0].intermediate.weight,
                           pretrained.genecompass.layers[0].intermediate.weight)
    assert all(torch.equal(v, random_b.state_dict()[k]) for k, v in random_a.state_dict().items())  # seeded
    assert not torch.equal(random_c.state_dict()[weight], random_a.state_dict()[weight])
    with pytest.raises(ValueError, match="init"):
        build_classifier(world["model_dir"], classes, init="imagenet")


def test_finetuning_learns_the_planted_types(finetuned, cells):
    result = finetuned
    assert result.classes == list(TYPES) and result.method == "genecompass_pretrained"
    truth = cells["obs"]["cell_type"].to_numpy()[result.test_index]
    assert np.array_equal(result.true_labels, truth)
    assert set(cells["obs"]["donor"].to_numpy()[result.test_index]) == {"D3"}
    assert result.metrics["macro_f1"] > 0.8  # chance is ~0.33
    assert result.metrics["accuracy"] == pytest.approx(np.mean(result.predictions == truth))
    assert result.probabilities.shape == (108, 3)
    assert np.allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert list(result.history.columns) == ["epoch", "lr", "train_loss", "val_loss", "val_accuracy", "val_macro_f1"]
    assert result.history["epoch"].tolist() == [1, 2, 3, 4]
    # Validation macro-F1 saturates early; among the saturated epochs the lowest validation loss wins.
    saturated = result.history[result.history["val_macro_f1"] == 1.0]
    assert len(saturated) >= 2
    assert result.best_epoch == int(saturated.loc[saturated["val_loss"].idxmin(), "epoch"])
    assert result.best_epoch != int(saturated["epoch"].iloc[0])
    assert result.history["train_loss"].iloc[-1] < result.history["train_loss"].iloc[0]
    frame = result.prediction_frame(cells["obs"].index)
    assert frame.columns.tolist() == ["cell", "true", "predicted", "p_alpha", "p_beta", "p_gamma"]
    assert result.summary()["metrics"]["labels"] == list(TYPES)


def test_finetuning_is_deterministic_for_a_seed(finetuned, world, cells):
    torch.manual_seed(12345)  # another global RNG state than the first run's: the seed alone decides
    again = finetune_classifier(cells["dataset"], cells["obs"]["cell_type"], cells["split"].assignment,
                                world["model_dir"], settings=fast_settings())
    assert np.array_equal(again.predictions, finetuned.predictions)
    assert np.array_equal(again.probabilities, finetuned.probabilities)
    assert again.history.equals(finetuned.history)


def test_early_stopping_restores_the_best_epoch(world, cells):
    # Shuffled labels: nothing generalises, the validation numbers wander and patience runs out.
    labels = np.random.default_rng(0).permutation(cells["obs"]["cell_type"].to_numpy())
    patience = 2
    result = finetune_classifier(cells["dataset"], labels, cells["split"].assignment, world["model_dir"],
                                 settings=fast_settings(epochs=30, patience=patience, lr=3e-3))
    history = result.history
    assert result.stopped_early and len(history) < 30
    assert len(history) == result.best_epoch + patience
    # The best epoch: highest validation macro-F1, then lowest validation loss.
    top = history[history["val_macro_f1"] == history["val_macro_f1"].max()]
    assert result.best_epoch == int(top.loc[top["val_loss"].idxmin(), "epoch"])
    row = history.iloc[result.best_epoch - 1]
    # The returned model is the best epoch's: its validation numbers are that epoch's, not the last one's.
    assert result.validation_metrics["macro_f1"] == row["val_macro_f1"]
    assert result.validation_metrics["loss"] == row["val_loss"]
    assert result.validation_metrics["loss"] != history["val_loss"].iloc[-1]


def test_random_init_finetuning_runs_the_control(world, cells):
    settings = fast_settings(epochs=1)
    control = finetune_classifier(cells["dataset"], cells["obs"]["cell_type"], cells["split"].assignment,
                                  world["model_dir"], init="random", settings=settings)
    pretrained = finetune_classifier(cells["dataset"], cells["obs"]["cell_type"], cells["split"].assignment,
                                     world["model_dir"], init="pretrained", settings=settings)
    assert control.method == "genecompass_random" and control.info["init"] == "random"
    assert control.info["n_parameters"] == pretrained.info["n_parameters"]
    assert not np.array_equal(control.probabilities, pretrained.probabilities)


def test_finetuning_input_errors(world, cells):
    labels = cells["obs"]["cell_type"]
    only_train = np.where(cells["split"].assignment == "validation", "train", cells["split"].assignment)
    with pytest.raises(ValueError, match="no validation cell"):
        finetune_classifier(cells["dataset"], labels, only_train, world["model_dir"], settings=fast_settings())
    with pytest.raises(ValueError, match="split values"):
        finetune_classifier(cells["dataset"], labels[:10], cells["split"].assignment, world["model_dir"])
    with pytest.raises(ValueError, match="unknown split values"):
        finetune_classifier(cells["dataset"], labels, ["holdout"] * len(labels), world["model_dir"])
    with pytest.raises(ValueError, match="max_length"):
        finetune_classifier(cells["dataset"], labels, cells["split"].assignment, world["model_dir"],
                            settings=fast_settings(max_length=MAX_LENGTH + 5))
    defaults = FinetuneSettings()
    assert (defaults.lr, defaults.batch_size, defaults.epochs) == (5e-5, 16, 50)  # the paper's settings
    with pytest.raises(ValueError, match="dtype"):
        FinetuneSettings(dtype="float16")
    with pytest.raises(ValueError, match="unknown fine-tuning settings"):
        FinetuneSettings.from_config({"learning_rate": 1e-4}, seed=0)
    assert FinetuneSettings.from_config({"epochs": 3}, seed=7).seed == 7


# --------------------------------------------------------------------------- baseline


def test_logistic_regression_baseline(world, cells):
    counts = counts_for_tokens(cells["dataset"], world["qc"])
    labels = cells["obs"]["cell_type"].to_numpy()
    assignment = cells["split"].assignment.to_numpy()
    settings = BaselineSettings(n_top_genes=40, n_pcs=10)
    result = logistic_regression_baseline(counts, labels, assignment, settings)
    assert result.metrics["accuracy"] > 0.95 and result.validation_metrics["accuracy"] > 0.9
    assert result.classes == list(TYPES) and result.info["n_hvg"] == 40 and result.info["n_pcs"] == 10
    assert np.array_equal(result.test_index, np.flatnonzero(assignment == "test"))

    # HVGs, PCA and the classifier are fitted on the training cells only: other test counts change nothing.
    test = assignment == "test"
    dense = counts.X.toarray()
    dense[test] = np.random.default_rng(1).poisson(20, size=(test.sum(), counts.n_vars))
    altered = anndata.AnnData(X=sparse.csr_matrix(dense), obs=counts.obs, var=counts.var)
    other = logistic_regression_baseline(altered, labels, assignment, settings)
    assert np.array_equal(other.model[0].components_, result.model[0].components_)
    assert np.array_equal(other.model[-1].coef_, result.model[-1].coef_)
    assert not np.array_equal(other.probabilities, result.probabilities)

    # A test label unseen in training is kept and counted as an error.
    novel = labels.copy()
    novel[test & (labels == "gamma")] = "delta"
    kept = logistic_regression_baseline(counts, novel, assignment, settings)
    assert kept.classes == list(TYPES) and kept.metrics["labels"] == ["alpha", "beta", "gamma", "delta"]
    assert kept.metrics["per_class"]["delta"]["recall"] == 0.0 and kept.metrics["per_class"]["delta"]["support"] == 36
    assert kept.metrics["accuracy"] <= 2 / 3 + 1e-9



def _result(probabilities, truth, classes=("a", "b"), test_index=(3, 5, 7), best_epoch=2):
    probabilities = np.asarray(probabilities, dtype=float)
    predicted = np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)]
    return AnnotationResult(method="genecompass_pretrained", classes=list(classes),
                            test_index=np.asarray(test_index), true_labels=np.asarray(truth, dtype=object),
                            predictions=predicted, probabilities=probabilities,
                            metrics=annotation_metrics(truth, predicted, list(classes)), validation_metrics={},
                            best_epoch=best_epoch)


def test_combine_seed_runs_hand_example():
    truth = ["a", "b", "b"]
    one = _result([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]], truth)      # 2 of 3 right
    two = _result([[0.4, 0.6], [0.1, 0.9], [0.3, 0.7]], truth, best_epoch=5)  # 2 of 3 right
    summary, frame = combine_seed_runs([one, two], [7, 11], cell_ids=[f"c{i}" for i in range(8)])
    assert summary["seeds"] == [7, 11] and [row["seed"] for row in summary["per_seed"]] == [7, 11]
    assert [row["best_epoch"] for row in summary["per_seed"]] == [2, 5]
    assert summary["mean"]["accuracy"] == pytest.approx(2 / 3) and summary["sd"]["accuracy"] == 0.0
    # mean probabilities: a 0.65 | b 0.75 | b 0.75 -> all three right
    assert frame["predicted"].tolist() == ["a", "b", "b"] and summary["consensus"]["accuracy"] == 1.0
    assert frame["cell"].tolist() == ["c3", "c5", "c7"]
    assert frame["seed_7"].tolist() == ["a", "a", "b"] and frame["seed_11"].tolist() == ["b", "b", "b"]
    assert frame["p_a"].tolist() == pytest.approx([0.65, 0.35, 0.25])
    assert len(summary["runs"]) == 2
    three = _result([[0.5, 0.5]] * 3, truth)
    three.metrics = annotation_metrics(truth, ["a", "a", "a"], ["a", "b"])
    summary, _ = combine_seed_runs([one, three], [0, 1])
    assert summary["sd"]["accuracy"] == pytest.approx(np.std([2 / 3, 1 / 3], ddof=1))
    with pytest.raises(ValueError, match="test cells"):
        combine_seed_runs([one, _result([[1, 0]] * 3, truth, test_index=(1, 2, 3))], [0, 1])
    with pytest.raises(ValueError, match="seeds"):
        combine_seed_runs([one], [0, 1])
