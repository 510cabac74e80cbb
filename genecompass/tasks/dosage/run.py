"""The dosage-sensitivity task's rules, one function each: files in, files out (the logic: :mod:`.finetune`)."""

from __future__ import annotations

import pandas as pd

from genecompass.dictionary import read_dictionary
from genecompass.gene_sets import gene_token_lookup, read_dosage_labels
from genecompass.tasks.dosage import finetune
from genecompass.utils import atomic_output, settings_from_config

INITS = {"genecompass": "pretrained", "genecompass_no_pretraining": "random"}


def _settings(task: dict, seed: int) -> finetune.DosageSettings:
    return settings_from_config(finetune.DosageSettings, task.get("finetune"), "tasks.dosage.finetune", seed=seed)


def _labels(task: dict, dictionary_path, labels_path) -> pd.Series:
    lookup = gene_token_lookup(read_dictionary(dictionary_path), task.get("species", "human"))
    labels = read_dosage_labels(labels_path, lookup)
    print(f"{len(labels)} labelled genes with a token: {int(labels.sum())} sensitive")
    return labels


def _write(folds: pd.DataFrame, predictions: pd.DataFrame, out_folds, out_predictions) -> None:
    print(folds.round(4).to_string())
    with atomic_output(out_folds) as tmp:
        folds.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    with atomic_output(out_predictions) as tmp:
        predictions.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def finetune_folds(method: str, task: dict, seed: int, model_dir, dictionary_path, labels_path, shards, out_folds,
                   out_predictions) -> pd.DataFrame:
    """Rule ``dosage_finetune``: gene-stratified cross-validation of the token classifier, from the pretrained
    model (``genecompass``) or the same architecture without pretraining."""
    from genecompass.corpus import load_tokenized
    from genecompass.devices import resolve_device

    settings = _settings(task, seed)
    settings.device = str(resolve_device(settings.device))
    labels = _labels(task, dictionary_path, labels_path)
    folds, predictions = finetune.cross_validate_finetuning(load_tokenized(list(shards)), labels, model_dir,
                                                            init=INITS[method], settings=settings, progress=True)
    _write(folds, predictions, out_folds, out_predictions)
    return folds


def logistic_folds(task: dict, seed: int, knowledge_path, dictionary_path, labels_path, out_folds,
                   out_predictions) -> pd.DataFrame:
    """Rule ``dosage_logistic``: logistic regression on the static knowledge embeddings, same gene folds."""
    settings = _settings(task, seed)
    labels = _labels(task, dictionary_path, labels_path)
    features = finetune.knowledge_features(knowledge_path, labels.index.to_numpy())
    folds, predictions = finetune.cross_validate_logistic(features, labels, settings.n_folds, settings.seed)
    _write(folds, predictions, out_folds, out_predictions)
    return folds


def evaluate(methods: list[str], fold_files, prediction_files, out_metrics, out_roc) -> pd.DataFrame:
    """Rule ``dosage_evaluate``: ROC-AUC mean ± sd over folds of every method, and the ROC figure."""
    folds = {m: pd.read_csv(p, sep="\t") for m, p in zip(methods, fold_files, strict=True)}
    predictions = {m: pd.read_csv(p, sep="\t") for m, p in zip(methods, prediction_files, strict=True)}
    metrics = finetune.summarise(folds)
    print(metrics.round(4).to_string())
    with atomic_output(out_metrics) as tmp:
        metrics.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    finetune.plot_roc(predictions, out_roc, title="Dosage-sensitive vs insensitive TFs (5-fold CV over genes)")
    return metrics
