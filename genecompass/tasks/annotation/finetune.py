"""Single-species cell-type annotation: fine-tuned GeneCompass against honest baselines.

Paper ("Single-species cell type annotation"): samples of different biological
backgrounds and batches form the training and the test set; a fully connected
layer on the cell embedding (the species-token output) is trained with
cross-entropy; lr 5e-5, batch size 16, 50 epochs. GeneCompass is compared with
GeneCompass without pre-training.

Steps (each a function; a script chains them)::

    cells = load_tokenized(token_paths)                   # results/tokens/shards/<sample>.arrow
    obs = obs_for_tokens(cells, qc_paths)                 # obs of results/qc/<sample>.h5ad, row-aligned
    split = split_by_group(obs, "donor", test_groups=["HD3"], seed=0)
    labels, assignment = obs["cell_type"], split.assignment
    gc = finetune_classifier(cells, labels, assignment, model_dir)                 # pre-trained
    control = finetune_classifier(cells, labels, assignment, model_dir, init="random")
    baseline = logistic_regression_baseline(counts_for_tokens(cells, qc_paths), labels, assignment)
    plot_confusion(gc.metrics["confusion_matrix"], gc.metrics["labels"], "confusion.png", "GeneCompass")

Splits never cut a group: the test cells (and the validation cells, when
``validation_groups`` are given) are whole samples, donors or batches. Without
validation groups, validation is a seeded, per-label (stratified) fraction of
the cells of the TRAINING groups: it then shares donors with training, so it
selects the epoch but does not measure transfer to new groups; only the test
set does.

Fine-tuning (:func:`finetune_classifier`): a
:class:`~genecompass.model.GeneCompassForSequenceClassification` loaded from a
pre-trained folder (``init="pretrained"``: encoder and knowledge buffers from
the checkpoint, classifier head seeded-random) or the same architecture with
seeded random weights and the checkpoint's knowledge buffers
(``init="random"``: the "without pre-training" control). AdamW (no weight
decay on biases and LayerNorms), linear warm-up then linear decay over the
planned steps, gradient clipping, length-grouped seeded batches (the
pre-training helpers), bf16 autocast when asked. After every epoch the
validation macro-F1 is computed; the weights of the best epoch are kept and
restored at the end, and training stops after ``patience`` epochs without a
new best. An epoch is a new best when its macro-F1 exceeds the best by more
than ``min_delta``, or when it is at least the best's and its validation
cross-entropy is lower (a saturated macro-F1, common on small validation
sets, does not freeze the first epoch that reached it). The
classes are the training labels; a validation or test label unseen in
training is kept and counted as an error (the model cannot predict it).
On CPU a seed gives the same predictions.

Baseline (:func:`logistic_regression_baseline`): counts normalised to
``target_sum`` per cell and log1p-transformed (per-cell operations), highly
variable genes (scanpy, flavor ``seurat``) and PCA fitted on the training
cells only, then scikit-learn's logistic regression on the standardised PCs,
on the same splits.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from genecompass.corpus import (
    CORPUS_COLUMNS,
    IGNORE_INDEX,
    BatchReader,
    batch_loader,
    cell_lengths,
    length_grouped_batches,
)
from genecompass.devices import autocast_for, resolve_device
from genecompass.errors import InputError
from genecompass.model import GeneCompassConfig, GeneCompassForSequenceClassification, GeneCompassForTokenClassification
from genecompass.tasks.annotation.metrics import annotation_metrics, plot_confusion, row_normalise, seed_statistics

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
UNUSED = "unused"  # training-group cells left out by a label budget (train_cells_per_label)
INITS = ("pretrained", "random")


# --------------------------------------------------------------------------- splits


@dataclass(eq=False)
class GroupSplit:
    """Train/validation/test assignment of cells (``assignment``: one of SPLITS or UNUSED per obs row).

    ``unseen_labels`` maps ``validation``/``test`` to the labels that occur
    there but not among the training cells (kept; they count as errors).
    """

    assignment: pd.Series
    cell_groups: np.ndarray = field(repr=False)
    cell_labels: np.ndarray = field(repr=False)
    group_column: str
    label_column: str
    test_groups: list[str]
    validation_groups: list[str] | None
    validation_fraction: float | None
    seed: int
    unseen_labels: dict[str, list[str]] = field(default_factory=dict)

    def counts(self) -> pd.DataFrame:
        """Cells per label (rows) and split (columns)."""
        table = pd.crosstab(pd.Series(self.cell_labels, name="label"),
                            pd.Series(self.assignment.to_numpy(), name="split"))
        return table.reindex(columns=list(SPLITS), fill_value=0)

    def groups(self, split: str) -> list[str]:
        """The groups with cells in ``split``."""
        return sorted(set(self.cell_groups[self.assignment.to_numpy() == split]))

    def to_dict(self) -> dict:
        """JSON-ready summary: the groups and cell counts of each split, per label."""
        return {"group_column": self.group_column, "label_column": self.label_column,
                "test_groups": self.test_groups, "validation_groups": self.validation_groups,
                "validation_fraction": self.validation_fraction, "seed": self.seed,
                "groups": {split: self.groups(split) for split in SPLITS},
                "n_cells": {split: int((self.assignment == split).sum()) for split in (*SPLITS, UNUSED)},
                "cells_per_label": {str(label): {split: int(n) for split, n in row.items()}
                                    for label, row in self.counts().iterrows()},
                "unseen_labels": self.unseen_labels}


def _as_group_list(groups) -> list[str]:
    if groups is None:
        return []
    if isinstance(groups, (str, bytes)) or np.ndim(groups) == 0:
        groups = [groups]
    return [str(g) for g in groups]


def dataset_labels(obs: pd.DataFrame, label_column: str, source=None, setting: str = "label_column") -> np.ndarray:
    """The cell-type label of every cell (``obs[label_column]`` as str), checked before any training.

    Raises :class:`~genecompass.errors.InputError` naming ``source`` (the files
    the cells come from) when the column is absent or its labels hold fewer than
    two classes: a classifier needs two. ``setting`` names the config key that
    chose the column, for the fix.
    """
    if label_column not in obs.columns:
        raise InputError(source, f"obs['{label_column}']",
                         f"no such column among the cells' obs columns {list(obs.columns)}",
                         f"set {setting} to the obs column holding the cell types, or add a "
                         f"'{label_column}' column to the samples' obs")
    labels = obs[label_column]
    classes = sorted(labels.dropna().astype(str).unique())
    if len(classes) < 2:
        raise InputError(source, f"obs['{label_column}']",
                         f"the {len(obs)} cells carry {len(classes)} label(s) {classes}; classification needs "
                         "at least two",
                         f"annotate samples with two or more cell types, or point {setting} at another column")
    return labels.astype(str).to_numpy()


def split_by_group(obs: pd.DataFrame, group_column: str, test_groups, validation_groups=None,
                   validation_fraction: float = 0.1, seed: int = 0, *, label_column: str = "cell_type",
                   allow_unseen_labels: bool = False, train_cells_per_label: int | None = None) -> GroupSplit:
    """Assign every cell of ``obs`` to train, validation or test by whole groups.

    ``test_groups`` (and ``validation_groups`` when given) are values of
    ``obs[group_column]`` (compared as strings): samples, donors or batches;
    every other group is training. With ``validation_groups=None`` the
    validation cells are a seeded, per-label fraction ``validation_fraction``
    of the training groups' cells (``round(fraction × n)`` cells of each label,
    at least one of each label left in training), i.e. NOT held-out groups.
    ``train_cells_per_label`` (a label budget, e.g. 3 for a few-shot setting)
    then keeps a seeded draw of at most that many training cells per label;
    the other training-group cells are marked ``unused`` and left out.

    Raises a ValueError (:class:`~genecompass.errors.InputError`) naming the
    column and values when a column or a group is unknown, a group is both
    test and validation, a split is empty, labels are missing, or (unless
    ``allow_unseen_labels``) test/validation cells carry labels absent from
    training. With ``allow_unseen_labels=True`` such cells are kept, reported
    in ``unseen_labels`` and a warning, and count as errors in every metric.
    """
    for column, role in ((group_column, "group_column"), (label_column, "label_column")):
        if column not in obs.columns:
            raise InputError(None, role, f"'{column}' is not an obs column (columns: {list(obs.columns)})",
                             f"set {role} to one of the obs columns")
    labels = obs[label_column]
    if labels.isna().any():
        unlabelled = obs.loc[labels.isna().to_numpy(), group_column].astype(str).value_counts().sort_index()
        where = ", ".join(f"{group} ({n} cells)" for group, n in unlabelled.items())
        raise InputError(None, label_column, f"{int(labels.isna().sum())} cells have no label, in groups of "
                                             f"column '{group_column}': {where}",
                         "leave unlabelled samples out, or drop or fill their cells before splitting")
    groups = obs[group_column].astype(str).to_numpy()
    labels = labels.astype(str).to_numpy()
    present = sorted(set(groups))
    test = _as_group_list(test_groups)
    validation = _as_group_list(validation_groups) if validation_groups is not None else None
    if not test:
        raise InputError(None, "test_groups", "no test group given",
                         f"name one or more values of obs column '{group_column}': {present}")
    for role, chosen in (("test_groups", test), ("validation_groups", validation or [])):
        unknown = [g for g in chosen if g not in present]
        if unknown:
            raise InputError(None, role, f"{unknown} are not values of obs column '{group_column}' "
                                         f"(it has {present})", f"choose {role} among {present}")
    if validation is not None:
        if not validation:
            raise InputError(None, "validation_groups", "an empty list",
                             "name one or more groups, or pass None to draw validation cells from training groups")
        both = sorted(set(test) & set(validation))
        if both:
            raise InputError(None, "validation_groups", f"groups {both} of column '{group_column}' are also "
                                                        "test groups", "give disjoint test and validation groups")

    assignment = np.full(len(obs), "train", dtype=object)
    assignment[np.isin(groups, test)] = "test"
    if validation is not None:
        assignment[np.isin(groups, validation)] = "validation"
    if not (assignment == "train").any():
        held = sorted(set(test) | set(validation or []))
        raise InputError(None, group_column, f"the training split is empty: groups {held} are all the groups "
                                             f"of column '{group_column}'",
                         "leave at least one group for training")
    if validation is None:
        if not 0.0 < float(validation_fraction) < 1.0:
            raise InputError(None, "validation_fraction", f"{validation_fraction} is not in (0, 1)",
                             "give a fraction such as 0.1, or validation_groups")
        train_rows = np.flatnonzero(assignment == "train")
        rng = np.random.default_rng([int(seed), 3])
        for label in sorted(set(labels[train_rows])):
            rows = train_rows[labels[train_rows] == label]
            n_val = min(int(math.floor(float(validation_fraction) * len(rows) + 0.5)), len(rows) - 1)
            if n_val > 0:
                assignment[rng.permutation(rows)[:n_val]] = "validation"
        if not (assignment == "validation").any():
            raise InputError(None, "validation_fraction",
                             f"the validation split is empty: a fraction {validation_fraction} of the "
                             f"{len(train_rows)} training-group cells (per label) gives no cell",
                             "raise validation_fraction or give validation_groups")
    if train_cells_per_label is not None:
        if int(train_cells_per_label) < 1:
            raise InputError(None, "train_cells_per_label", f"{train_cells_per_label} is below 1",
                             "give a positive number of labelled training cells per label, or null for all")
        rng = np.random.default_rng([int(seed), 4])
        train_rows = np.flatnonzero(assignment == "train")
        for label in sorted(set(labels[train_rows])):
            rows = train_rows[labels[train_rows] == label]
            assignment[rng.permutation(rows)[int(train_cells_per_label):]] = UNUSED
    train_labels = set(labels[assignment == "train"])
    unseen: dict[str, list[str]] = {}
    for split in ("validation", "test"):
        extra = sorted(set(labels[assignment == split]) - train_labels)
        if extra:
            unseen[split] = extra
    if unseen:
        detail = "; ".join(
            f"{split}: " + ", ".join(f"{lab} ({int(((assignment == split) & (labels == lab)).sum())} cells)"
                                     for lab in extra) for split, extra in unseen.items())
        message = (f"labels of column '{label_column}' absent from the training groups of column "
                   f"'{group_column}': {detail}")
        if not allow_unseen_labels:
            raise InputError(None, label_column, message,
                             "choose other test/validation groups, or pass allow_unseen_labels=True to keep "
                             "these cells (they are counted as errors: the model cannot predict an unseen label)")
        log.warning("%s; kept and counted as errors", message)
    return GroupSplit(assignment=pd.Series(assignment.astype(str), index=obs.index, name="split"),
                      cell_groups=groups, cell_labels=labels, group_column=group_column,
                      label_column=label_column, test_groups=test, validation_groups=validation,
                      validation_fraction=None if validation is not None else float(validation_fraction),
                      seed=int(seed), unseen_labels=unseen)


# --------------------------------------------------------------------------- inputs


def _qc_paths(qc_paths) -> dict[str, Path]:
    if isinstance(qc_paths, Mapping):
        return {str(k): Path(v) for k, v in qc_paths.items()}
    return {Path(p).stem: Path(p) for p in qc_paths}


def _qc_path(paths: dict[str, Path], sample: str) -> Path:
    if sample not in paths:
        raise InputError(None, "qc_paths", f"no QC file for tokenized sample '{sample}' (given: {list(paths)})",
                         "pass results/qc/<sample>.h5ad for every tokenized sample")
    return paths[sample]


def _token_keys(dataset) -> pd.DataFrame:
    missing = [c for c in ("sample", "cell_id") if c not in dataset.column_names]
    if missing:
        raise InputError(None, ", ".join(missing), "the tokenized cells lack these columns",
                         "tokenize with genecompass.tokenize.tokenize_sample (docs/formats.md, 'Shards')")
    keys = dataset.select_columns(["sample", "cell_id"]).to_pandas()
    keys.index = keys["sample"].astype(str) + "/" + keys["cell_id"].astype(str)
    if keys.index.has_duplicates:
        repeated = keys.index[keys.index.duplicated()][:5].tolist()
        raise InputError(None, "cell_id", f"cells repeated within a sample: {repeated}",
                         "give each tokenized sample once")
    return keys


def _locate(keys: pd.DataFrame, sample: str, names: pd.Index, path) -> np.ndarray:
    wanted = keys.loc[keys["sample"] == sample, "cell_id"].astype(str)
    position = pd.Index(names.astype(str)).get_indexer(wanted.to_numpy())
    if (position < 0).any():
        absent = wanted.to_numpy()[position < 0][:5].tolist()
        raise InputError(path, "obs_names", f"{int((position < 0).sum())} tokenized cells of sample '{sample}' "
                                            f"are not in this QC file (e.g. {absent})",
                         "tokenize and annotate the same QC output")
    return position


def obs_for_tokens(dataset, qc_paths) -> pd.DataFrame:
    """The QC ``obs`` of every tokenized cell, in the dataset's row order.

    ``qc_paths``: ``{sample: path}`` or paths named ``<sample>.h5ad``. The
    index is ``sample/cell_id``; columns ``sample`` and ``cell_id`` are added.
    Only ``obs`` is read (backed mode), never the counts.
    """
    import anndata

    keys = _token_keys(dataset)
    paths = _qc_paths(qc_paths)
    frames = []
    for sample in pd.unique(keys["sample"]):
        adata = anndata.read_h5ad(_qc_path(paths, sample), backed="r")
        try:
            obs = adata.obs
            position = _locate(keys, sample, obs.index, paths[sample])
            frame = obs.iloc[position].copy()
        finally:
            adata.file.close()
        for column in frame.columns:  # categories differ between samples: keep plain values
            if isinstance(frame[column].dtype, pd.CategoricalDtype):
                frame[column] = frame[column].astype(object)
        frame["sample"] = sample
        frame["cell_id"] = frame.index.astype(str)
        frame.index = sample + "/" + frame["cell_id"]
        frames.append(frame)
    return pd.concat(frames).loc[keys.index]


def counts_for_tokens(dataset, qc_paths):
    """An AnnData of the QC'd raw counts of every tokenized cell, in the dataset's row order.

    Samples are joined on gene IDs (outer join; a gene missing from a sample
    counts 0); ``obs`` as :func:`obs_for_tokens`. Each sample is read once.
    """
    import anndata

    keys = _token_keys(dataset)
    paths = _qc_paths(qc_paths)
    parts = []
    for sample in pd.unique(keys["sample"]):
        adata = anndata.read_h5ad(_qc_path(paths, sample))
        position = _locate(keys, sample, adata.obs_names, paths[sample])
        part = anndata.AnnData(X=adata.X[position], obs=adata.obs.iloc[position].copy(), var=adata.var[[]].copy())
        for column in part.obs.columns:
            if isinstance(part.obs[column].dtype, pd.CategoricalDtype):
                part.obs[column] = part.obs[column].astype(object)
        part.obs["sample"] = sample
        part.obs["cell_id"] = part.obs_names.astype(str)
        part.obs_names = sample + "/" + part.obs["cell_id"].to_numpy()
        parts.append(part)
        del adata
    joined = parts[0] if len(parts) == 1 else anndata.concat(parts, join="outer", fill_value=0)
    return joined[keys.index].copy()


# --------------------------------------------------------------------------- results


@dataclass
class AnnotationResult:
    """One method's annotation of the test cells (rows ``test_index`` of the input)."""

    method: str
    classes: list[str]                 # the trained classes (probability columns)
    test_index: np.ndarray             # row positions of the test cells in the input
    true_labels: np.ndarray            # test cells' labels
    predictions: np.ndarray            # test cells' predicted labels
    probabilities: np.ndarray          # test cells × classes
    metrics: dict                      # annotation_metrics on the test cells (labels = classes first)
    validation_metrics: dict           # the same on the validation cells (+ ``loss`` for fine-tuning)
    history: pd.DataFrame | None = None  # per epoch: epoch, lr, train_loss, val_loss, val_accuracy, val_macro_f1
    best_epoch: int | None = None      # 1-based epoch whose weights were kept
    stopped_early: bool = False
    info: dict = field(default_factory=dict)
    model: object = field(default=None, repr=False)

    def prediction_frame(self, cell_ids: Sequence | None = None) -> pd.DataFrame:
        """One row per test cell: ``cell``, ``true``, ``predicted`` and ``p_<class>`` columns."""
        cells = (np.asarray(cell_ids, dtype=object)[self.test_index] if cell_ids is not None
                 else self.test_index)
        frame = pd.DataFrame({"cell": cells, "true": self.true_labels, "predicted": self.predictions})
        probabilities = pd.DataFrame(self.probabilities, columns=[f"p_{c}" for c in self.classes])
        return pd.concat([frame, probabilities], axis=1)

    def summary(self) -> dict:
        """JSON-ready: method, classes, test and validation metrics, kept epoch, info (no arrays)."""
        return {"method": self.method, "classes": self.classes, "metrics": self.metrics,
                "validation_metrics": self.validation_metrics, "best_epoch": self.best_epoch,
                "stopped_early": self.stopped_early,
                "epochs_run": None if self.history is None else int(len(self.history)), "info": self.info}


def combine_seed_runs(results: Sequence[AnnotationResult], seeds: Sequence[int],
                      cell_ids: Sequence | None = None) -> tuple[dict, pd.DataFrame]:
    """One method's runs over several seeds, on the same test cells: summary and predictions.

    Summary (JSON-ready): ``seeds``; ``per_seed`` rows (seed, test accuracy and
    macro-F1, kept epoch); their ``mean`` and sample ``sd``; ``consensus``:
    :func:`annotation_metrics` of the mean-probability prediction; ``runs``:
    each run's :meth:`AnnotationResult.summary`. Predictions: one row per test
    cell with ``true``, every seed's prediction (``seed_<s>``), the consensus
    ``predicted`` label and the mean ``p_<class>`` probabilities.
    """
    seeds = [int(seed) for seed in seeds]
    if not results or len(results) != len(seeds):
        raise ValueError(f"{len(results)} results for {len(seeds)} seeds")
    first = results[0]
    for result in results[1:]:
        if result.classes != first.classes or not np.array_equal(result.test_index, first.test_index):
            raise ValueError("seed runs differ in their classes or test cells; they cannot be combined")
    per_seed = pd.DataFrame([{"seed": seed, "accuracy": r.metrics["accuracy"], "macro_f1": r.metrics["macro_f1"],
                              "best_epoch": r.best_epoch} for seed, r in zip(seeds, results, strict=True)])
    mean, sd = seed_statistics(per_seed, ("accuracy", "macro_f1"))
    probabilities = np.mean([r.probabilities for r in results], axis=0)
    predicted = np.asarray(first.classes, dtype=object)[probabilities.argmax(axis=1)] if len(probabilities) else \
        np.array([], dtype=object)
    consensus = annotation_metrics(first.true_labels, predicted, first.classes)
    frame = first.prediction_frame(cell_ids)[["cell", "true"]]
    for seed, result in zip(seeds, results, strict=True):
        frame[f"seed_{seed}"] = result.predictions
    frame["predicted"] = predicted
    frame = pd.concat([frame, pd.DataFrame(probabilities, columns=[f"p_{c}" for c in first.classes])], axis=1)
    summary = {"method": first.method, "classes": first.classes, "seeds": seeds,
               "per_seed": per_seed.to_dict(orient="records"), "mean": mean, "sd": sd, "consensus": consensus,
               "runs": [r.summary() for r in results]}
    return summary, frame


def _check_inputs(n_cells: int, labels, split) -> tuple[np.ndarray, np.ndarray, list[str]]:
    labels = np.asarray(labels, dtype=object).astype(str)
    split = np.asarray(split, dtype=object).astype(str)
    if labels.shape != (n_cells,) or split.shape != (n_cells,):
        raise InputError(None, "labels/split", f"{labels.size} labels and {split.size} split values for "
                                               f"{n_cells} cells",
                         "give one label and one split per cell, in row order")
    unknown = sorted(set(split) - {*SPLITS, UNUSED})
    if unknown:
        raise InputError(None, "split", f"unknown split values {unknown}",
                         f"use {[*SPLITS, UNUSED]} (see split_by_group)")
    for name in ("train", "validation"):
        if not (split == name).any():
            raise InputError(None, "split", f"no {name} cell", "see split_by_group")
    classes = [str(c) for c in sorted(set(labels[split == "train"]))]
    if len(classes) < 2:
        raise InputError(None, "labels", f"the training cells carry a single label {classes}",
                         "choose training groups with at least two cell types")
    return labels, split, classes


# --------------------------------------------------------------------------- fine-tuning


@dataclass
class FinetuneSettings:
    """Settings of :func:`finetune_classifier` (paper: lr 5e-5, batch size 16, 50 epochs).

    ``warmup_ratio`` of the planned steps warm the learning rate up linearly,
    then it decays linearly to 0 at ``epochs``. ``patience``: epochs without
    a new best (validation macro-F1 gain larger than ``min_delta``, or equal
    macro-F1 with lower validation loss) before stopping (``None``: run all
    epochs; the best epoch is restored either way).
    ``max_length`` (genes per cell) defaults to the model's position table.
    """

    lr: float = 5e-5
    batch_size: int = 16
    epochs: int = 50
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    patience: int | None = 10
    min_delta: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int | None = None
    eval_batch_size: int = 64
    mega_batch_factor: int = 50
    device: str = "auto"
    dtype: str = "float32"
    seed: int = 0
    num_workers: int = 0

    def __post_init__(self):
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise InputError(None, "device", f"'{self.device}'", "use auto, cpu or cuda")
        if self.dtype not in ("float32", "bfloat16"):
            raise InputError(None, "dtype", f"'{self.dtype}'", "use float32 or bfloat16")
        for name in ("batch_size", "epochs", "eval_batch_size", "mega_batch_factor"):
            if int(getattr(self, name)) < 1:
                raise InputError(None, name, f"{getattr(self, name)} is below 1", "give a positive integer")
        if self.patience is not None and int(self.patience) < 1:
            raise InputError(None, "patience", f"{self.patience} is below 1", "give a positive integer or None")
        if self.lr <= 0 or not 0.0 <= self.warmup_ratio < 1.0 or self.weight_decay < 0:
            raise InputError(None, "lr/warmup_ratio/weight_decay",
                             f"lr {self.lr}, warmup_ratio {self.warmup_ratio}, weight_decay {self.weight_decay}",
                             "use lr > 0, 0 <= warmup_ratio < 1 and weight_decay >= 0")

    @classmethod
    def from_config(cls, section: Mapping, seed: int) -> FinetuneSettings:
        """Settings from a workflow config section (unknown keys are an error)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(section) - known)
        if unknown:
            raise InputError(None, ", ".join(unknown), "unknown fine-tuning settings",
                             f"use keys among {sorted(known)}")
        return cls(**{**dict(section), "seed": int(seed)})


def _copy_knowledge(source, target) -> None:
    state = source.state_dict()
    names = [name for name, _ in target.named_buffers() if ".knowledge_" in name]
    with torch.no_grad():
        for name, buffer in target.named_buffers():
            if name in names:
                buffer.copy_(state[name])


def build_classifier(model_dir, classes: Sequence[str], init: str = "pretrained", seed: int = 0,
                     model_class=GeneCompassForSequenceClassification):
    """A cell classifier over ``classes`` from a GeneCompass folder written by ``save_pretrained``.

    ``init="pretrained"``: encoder weights and knowledge buffers from the
    checkpoint, a new seeded classifier head. ``init="random"``: the same
    config and knowledge buffers, every weight seeded-random (the
    "without pre-training" control). The caller's torch RNG is left untouched.
    ``model_class``: :class:`~genecompass.model.GeneCompassForSequenceClassification`
    (cells) or :class:`~genecompass.model.GeneCompassForTokenClassification` (genes).
    """
    if model_class not in (GeneCompassForSequenceClassification, GeneCompassForTokenClassification):
        raise InputError(None, "model_class", f"{model_class!r}",
                         "use GeneCompassForSequenceClassification or GeneCompassForTokenClassification")
    model_dir = Path(model_dir)
    if init not in INITS:
        raise InputError(None, "init", f"'{init}'", f"use one of {list(INITS)}")
    if not (model_dir / "config.json").is_file():
        raise InputError(model_dir, "config.json", "not a save_pretrained folder",
                         "give a pre-trained model folder (e.g. results/model/<variant>/model)")
    classes = [str(c) for c in classes]
    names = {"num_labels": len(classes), "id2label": dict(enumerate(classes)),
             "label2id": {c: i for i, c in enumerate(classes)}}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        pretrained = model_class.from_pretrained(model_dir, **names)
        if init == "pretrained":
            return pretrained
        config = GeneCompassConfig.from_pretrained(model_dir, **names)
        model = model_class(config)
    _copy_knowledge(pretrained, model)
    return model


def parameter_groups(model, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def predict_logits(model, dataset, rows: np.ndarray, max_length: int, batch_size: int = 64,
                   autocast=None, lengths: np.ndarray | None = None) -> np.ndarray:
    """Logits (float32, ``rows`` order) of the given dataset rows, in length-sorted batches, eval mode.

    ``lengths``: the (cut) length of every dataset row, when already read.
    """
    cfg = model.config
    device = next(model.parameters()).device
    rows = np.asarray(rows, dtype=np.int64)
    logits = np.zeros((len(rows), cfg.num_labels), dtype=np.float32)
    if len(rows) == 0:
        return logits
    lengths = (cell_lengths(dataset, max_length) if lengths is None else np.asarray(lengths))[rows]
    order = np.argsort(-lengths, kind="stable")
    positions = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    reader = BatchReader(dataset, [rows[p] for p in positions], max_length, cfg.species_token_ids,
                          cfg.pad_token_id)
    was_training = model.training
    model.eval()
    for i, where in enumerate(positions):
        batch = reader[i]
        with autocast() if autocast else contextlib.nullcontext():
            out = model(input_ids=batch["input_ids"].to(device), values=batch["values"].to(device),
                        species_ids=batch["species_ids"].to(device),
                        attention_mask=batch["attention_mask"].to(device))
        logits[where] = out.logits.float().cpu().numpy()
    model.train(was_training)
    return logits


def _softmax(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy()


def _evaluate(logits: np.ndarray, truth: np.ndarray, classes: list[str]) -> dict:
    label_ids = {c: i for i, c in enumerate(classes)}
    targets = torch.as_tensor([label_ids.get(t, IGNORE_INDEX) for t in truth], dtype=torch.long)
    known = targets != IGNORE_INDEX
    loss = (float(torch.nn.functional.cross_entropy(torch.from_numpy(logits)[known], targets[known]))
            if bool(known.any()) else float("nan"))
    predicted = np.asarray(classes, dtype=object)[logits.argmax(axis=1)] if len(truth) else np.array([], dtype=object)
    return {**annotation_metrics(truth, predicted, classes), "loss": loss}


def finetune_classifier(dataset, labels, split, model_dir, *, init: str = "pretrained",
                        settings: FinetuneSettings | None = None, progress: bool = False) -> AnnotationResult:
    """Fine-tune GeneCompass for cell types; predict the test cells with the best-validation weights.

    ``dataset``: tokenized cells (``input_ids``, ``values``, ``length``,
    ``species``; e.g. :func:`load_tokenized`); ``labels`` and ``split`` (one of
    ``train``/``validation``/``test``) per row, e.g. from :func:`split_by_group`.
    ``init``: ``pretrained`` or ``random`` (see :func:`build_classifier`). The
    returned ``model`` holds the kept weights (``save_pretrained`` writes it).
    The caller's torch RNG state is left untouched.
    """
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    settings = settings or FinetuneSettings()
    started = time.time()
    labels, split, classes = _check_inputs(len(dataset), labels, split)
    train_rows, val_rows, test_rows = (np.flatnonzero(split == s) for s in SPLITS)
    device = resolve_device(settings.device)
    cells = dataset.select_columns(CORPUS_COLUMNS)
    autocast, use_bf16 = autocast_for(device, settings.dtype)

    fork_devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        model = build_classifier(model_dir, classes, init=init, seed=settings.seed)
        cfg = model.config
        max_length = int(settings.max_length or cfg.max_genes)
        if max_length > cfg.max_genes:
            raise InputError(None, "max_length", f"{max_length} exceeds the model's position table "
                                                 f"({cfg.max_genes} genes)", f"use at most {cfg.max_genes}")
        model.to(device)
        torch.manual_seed(int(settings.seed) + 1)  # dropout stream
        label_ids = np.array([cfg.label2id.get(lab, IGNORE_INDEX) for lab in labels], dtype=np.int64)
        lengths = cell_lengths(cells, max_length)
        train_lengths = lengths[train_rows]

        def predict(rows: np.ndarray) -> np.ndarray:
            return predict_logits(model, cells, rows, max_length, settings.eval_batch_size, autocast, lengths)

        def epoch_batches(epoch: int) -> list[np.ndarray]:
            return [train_rows[b] for b in length_grouped_batches(
                train_lengths, settings.batch_size, settings.seed, epoch, settings.mega_batch_factor)]

        batches_per_epoch = len(epoch_batches(0))
        total_steps = int(settings.epochs) * batches_per_epoch
        optimizer = torch.optim.AdamW(parameter_groups(model, settings.weight_decay), lr=settings.lr)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(round(settings.warmup_ratio * total_steps)),
                                                    total_steps)
        history, best_state, best_epoch, best_f1, best_loss, stale = [], None, 0, -math.inf, math.inf, 0
        stopped_early = False
        for epoch in tqdm(range(int(settings.epochs)), desc=f"fine-tune ({init})", disable=not progress):
            model.train()
            batches = epoch_batches(epoch)
            reader = BatchReader(cells, batches, max_length, cfg.species_token_ids, cfg.pad_token_id)
            loss_sum, n_seen = 0.0, 0
            for rows, batch in zip(batches, batch_loader(reader, settings.num_workers, int(settings.seed) + epoch),
                                   strict=True):
                targets = torch.as_tensor(label_ids[rows]).to(device)
                with autocast():
                    out = model(input_ids=batch["input_ids"].to(device), values=batch["values"].to(device),
                                species_ids=batch["species_ids"].to(device),
                                attention_mask=batch["attention_mask"].to(device), labels=targets)
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                if settings.max_grad_norm and settings.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
                optimizer.step()
                scheduler.step()
                loss_sum += float(out.loss.detach()) * len(rows)
                n_seen += len(rows)
            val = _evaluate(predict(val_rows), labels[val_rows], classes)
            history.append({"epoch": epoch + 1, "lr": scheduler.get_last_lr()[0], "train_loss": loss_sum / n_seen,
                            "val_loss": val["loss"], "val_accuracy": val["accuracy"],
                            "val_macro_f1": val["macro_f1"]})
            log.info("epoch %d: train loss %.4f, validation loss %.4f, accuracy %.4f, macro-F1 %.4f", epoch + 1,
                     loss_sum / n_seen, val["loss"], val["accuracy"], val["macro_f1"])
            gained = val["macro_f1"] > best_f1 + settings.min_delta
            tied = val["macro_f1"] >= best_f1 and val["loss"] < best_loss  # saturated macro-F1: lower loss wins
            if gained or tied:
                best_f1, best_loss, best_epoch, stale = max(best_f1, val["macro_f1"]), val["loss"], epoch + 1, 0
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            else:
                stale += 1
                if settings.patience is not None and stale >= int(settings.patience):
                    stopped_early = epoch + 1 < int(settings.epochs)
                    break
        model.load_state_dict(best_state)
        model.eval()
        val_logits, test_logits = predict(val_rows), predict(test_rows)
    validation_metrics = _evaluate(val_logits, labels[val_rows], classes)
    test_metrics = _evaluate(test_logits, labels[test_rows], classes)
    probabilities = _softmax(test_logits)
    predictions = np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)] if len(test_rows) else \
        np.array([], dtype=object)
    info = {"init": init, "settings": asdict(settings), "device": str(device),
            "dtype": "bfloat16" if use_bf16 else "float32", "max_length": max_length,
            "n_cells": {"train": len(train_rows), "validation": len(val_rows), "test": len(test_rows)},
            "steps": int(len(history) * batches_per_epoch), "planned_steps": total_steps,
            "seconds": round(time.time() - started, 3), "model_dir": str(model_dir),
            "n_parameters": int(sum(p.numel() for p in model.parameters()))}
    log.info("fine-tuning (%s): kept epoch %d of %d, validation macro-F1 %.4f, test accuracy %.4f, macro-F1 %.4f",
             init, best_epoch, len(history), validation_metrics["macro_f1"], test_metrics["accuracy"],
             test_metrics["macro_f1"])
    return AnnotationResult(
        method=f"genecompass_{init}", classes=classes, test_index=test_rows, true_labels=labels[test_rows],
        predictions=predictions, probabilities=probabilities, metrics=test_metrics,
        validation_metrics=validation_metrics, history=pd.DataFrame(history), best_epoch=best_epoch,
        stopped_early=stopped_early, info=info, model=model)


# --------------------------------------------------------------------------- baseline


@dataclass
class BaselineSettings:
    """Logistic regression on the PCA of log-normalised highly variable genes (all fitted on train)."""

    target_sum: float = 1e4
    n_top_genes: int = 2000
    n_pcs: int = 50
    C: float = 1.0
    max_iter: int = 1000
    seed: int = 0

    def __post_init__(self):
        for name in ("n_top_genes", "n_pcs", "max_iter"):
            if int(getattr(self, name)) < 1:
                raise InputError(None, name, f"{getattr(self, name)} is below 1", "give a positive integer")
        if self.target_sum <= 0 or self.C <= 0:
            raise InputError(None, "target_sum/C", f"{self.target_sum}, {self.C}", "use positive values")


def _log_normalised(adata, target_sum: float):
    import anndata
    import scanpy as sc
    from scipy import sparse

    X = adata.X
    X = X.astype(np.float32) if sparse.issparse(X) else np.asarray(X, dtype=np.float32)
    work = anndata.AnnData(X=sparse.csr_matrix(X) if sparse.issparse(X) else X)
    work.obs_names = adata.obs_names.astype(str)
    work.var_names = adata.var_names.astype(str)
    sc.pp.normalize_total(work, target_sum=float(target_sum))
    sc.pp.log1p(work)
    return work


def logistic_regression_baseline(adata, labels, split, settings: BaselineSettings | None = None) -> AnnotationResult:
    """Annotate the test cells with logistic regression on PCs of highly variable genes.

    ``adata.X`` holds raw counts (e.g. :func:`counts_for_tokens`); ``labels``
    and ``split`` are per row, as for :func:`finetune_classifier`. Validation
    cells are not used for fitting; their metrics are reported.
    """
    import scanpy as sc
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    settings = settings or BaselineSettings()
    started = time.time()
    labels, split, classes = _check_inputs(adata.n_obs, labels, split)
    train_rows, val_rows, test_rows = (np.flatnonzero(split == s) for s in SPLITS)
    work = _log_normalised(adata, settings.target_sum)
    train = work[train_rows].copy()
    n_top = min(int(settings.n_top_genes), train.n_vars)
    if n_top < train.n_vars:
        sc.pp.highly_variable_genes(train, n_top_genes=n_top, flavor="seurat")
        genes = train.var_names[train.var["highly_variable"].to_numpy()]
    else:
        genes = train.var_names
    n_pcs = max(1, min(int(settings.n_pcs), len(train_rows) - 1, len(genes) - 1))
    gene_index = work.var_names.get_indexer(genes)
    classifier = make_pipeline(
        PCA(n_components=n_pcs, svd_solver="arpack", random_state=int(settings.seed)), StandardScaler(),
        LogisticRegression(C=float(settings.C), max_iter=int(settings.max_iter), random_state=int(settings.seed)))
    classifier.fit(train.X[:, gene_index], labels[train_rows])
    if list(classifier.classes_) != classes:
        raise RuntimeError(f"classifier classes {list(classifier.classes_)} differ from {classes}")

    def predict(rows):
        if len(rows) == 0:
            return np.zeros((0, len(classes))), np.array([], dtype=object)
        p = classifier.predict_proba(work.X[rows][:, gene_index])
        return p, np.asarray(classes, dtype=object)[p.argmax(axis=1)]

    _, val_predicted = predict(val_rows)
    probabilities, predictions = predict(test_rows)
    info = {"settings": asdict(settings), "n_hvg": int(len(genes)), "n_pcs": int(n_pcs),
            "n_cells": {"train": len(train_rows), "validation": len(val_rows), "test": len(test_rows)},
            "seconds": round(time.time() - started, 3)}
    return AnnotationResult(
        method="logistic_regression_pca", classes=classes, test_index=test_rows, true_labels=labels[test_rows],
        predictions=predictions, probabilities=probabilities,
        metrics=annotation_metrics(labels[test_rows], predictions, classes),
        validation_metrics=annotation_metrics(labels[val_rows], val_predicted, classes), info=info,
        model=classifier)


__all__ = [
    "INITS", "SPLITS", "UNUSED", "AnnotationResult", "BaselineSettings", "FinetuneSettings", "GroupSplit",
    "annotation_metrics", "build_classifier", "combine_seed_runs", "counts_for_tokens", "dataset_labels",
    "finetune_classifier",
    "logistic_regression_baseline", "obs_for_tokens", "plot_confusion", "predict_logits", "row_normalise",
    "split_by_group",
]
