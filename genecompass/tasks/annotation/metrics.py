"""Cell-type annotation metrics and the confusion-matrix figure, shared by every annotation task.

:func:`annotation_metrics` is the one definition of accuracy and macro-F1 for
single-species fine-tuning, its baselines and cross-species CAME: macro-F1 is
averaged over the union of the true and the predicted labels (scikit-learn's
default, as CAME), so a class absent from both truth and predictions does not
enter the average, while a true label the model cannot predict (unseen in
training) enters with F1 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genecompass.errors import InputError


def _as_labels(values) -> np.ndarray:
    return np.asarray(values, dtype=object).astype(str)


def annotation_metrics(true_labels, predicted_labels, labels: Sequence[str] | None = None) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    ``labels`` fixes the order of the classes (e.g. the trained classes);
    labels seen in the truth or the predictions but not in ``labels`` are
    appended, sorted, so nothing is dropped. Returns a JSON-ready dict:
    ``accuracy``, ``macro_f1`` (over the union of true and predicted labels),
    ``n_cells``, ``labels`` (the row/column order), ``per_class`` (label →
    ``precision``, ``recall``, ``f1``, ``support`` = true cells,
    ``n_predicted``) and ``confusion_matrix`` (rows true, columns predicted,
    cell counts).
    """
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    truth = _as_labels(true_labels)
    predicted = _as_labels(predicted_labels)
    if truth.ndim != 1 or truth.shape != predicted.shape:
        raise InputError(None, "labels", f"{truth.size} true labels for {predicted.size} predictions",
                         "give one true label per predicted cell, in the same order")
    order = [str(label) for label in (labels if labels is not None else [])]
    if len(set(order)) != len(order):
        raise InputError(None, "labels", f"repeated class names in {order}", "give each class once")
    extra = sorted((set(truth) | set(predicted)) - set(order))
    order = order + extra
    n = len(truth)
    if n == 0:
        return {"accuracy": float("nan"), "macro_f1": float("nan"), "n_cells": 0, "labels": order,
                "per_class": {label: {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "n_predicted": 0}
                              for label in order},
                "confusion_matrix": [[0] * len(order) for _ in order]}
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=order,
                                                                     zero_division=0)
    matrix = confusion_matrix(truth, predicted, labels=order)
    per_class = {label: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                         "support": int(support[i]), "n_predicted": int(matrix[:, i].sum())}
                 for i, label in enumerate(order)}
    return {"accuracy": float(accuracy_score(truth, predicted)),
            "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
            "n_cells": n, "labels": order, "per_class": per_class,
            "confusion_matrix": matrix.astype(int).tolist()}


def seed_statistics(per_seed, columns: Sequence[str] = ("ami", "accuracy", "macro_f1")) -> tuple[dict, dict]:
    """Mean and sample sd (0 for one seed) over seeds of the ``columns`` a per-seed table has."""
    present = [column for column in columns if column in per_seed]
    mean = {column: float(per_seed[column].mean()) for column in present}
    sd = {column: float(per_seed[column].std(ddof=1)) if len(per_seed) > 1 else 0.0 for column in present}
    return mean, sd


def row_normalise(matrix) -> np.ndarray:
    """Each row divided by its sum (rows without cells stay zero)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    sums = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, sums, out=np.zeros_like(matrix), where=sums > 0)


def plot_confusion(matrix, labels: Sequence[str], path, title: str = "") -> None:
    """Row-normalised confusion matrix (rows: true label, columns: predicted), written atomically.

    Each cell shows the share of the row's true cells; the row labels carry
    the number of true cells.
    """
    from genecompass.plotting import plt, save_figure

    counts = np.asarray(matrix)
    labels = [str(label) for label in labels]
    if counts.ndim != 2 or counts.shape != (len(labels), len(labels)):
        raise InputError(None, "matrix", f"shape {counts.shape} for {len(labels)} labels",
                         "give a square matrix with one row and column per label")
    shares = row_normalise(counts)
    size = max(4.0, 0.55 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    rows = counts.sum(axis=1)
    ax.set_yticks(range(len(labels)), [f"{label} (n={int(n)})" for label, n in zip(labels, rows, strict=True)])
    if len(labels) <= 30:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if rows[i] > 0:
                    ax.text(j, i, f"{shares[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true cells")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


__all__ = ["annotation_metrics", "plot_confusion", "row_normalise"]
