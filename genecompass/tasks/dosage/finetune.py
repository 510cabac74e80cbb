"""Gene dosage-sensitivity classification with a fine-tuned GeneCompass (Geneformer's gene classification).

Paper ("Gene dosage sensitivity predictions"), following Geneformer (Theodoris
et al. 2023): transcription factors labelled dosage-sensitive (1) or
dosage-insensitive (0) by Ni et al. 2019 are classified from their context in
single cells. The token-classification head of a pre-trained GeneCompass is
fine-tuned on every occurrence of a labelled TF token in a sample of cells (up
to 10,000 cells with at least one labelled gene); every other position is
ignored (label -100). Evaluation is 5-fold cross-validation stratified over
GENES: a gene's occurrences are all in training or all in test, never both, so
the model has to generalise to genes it has never been told about. The score
is the ROC-AUC of the test genes (the mean predicted probability of a gene over
its occurrences; the per-occurrence AUC is reported as well), mean ± sd over
folds, with pooled ROC curves. The GeneCompass paper reports an AUC of 0.95 on
the Ni et al. 2019 labels.

Side by side (same folds, same cells):

- ``init="random"``: the same architecture and knowledge buffers with random
  weights ("without pre-training");
- :func:`cross_validate_logistic`: logistic regression on the static prior
  knowledge vectors of each gene alone (:func:`knowledge_features`), one row
  per gene, no cells at all.

Steps::

    labels = read_dosage_labels(path, gene_token_lookup(dictionary, "human"))   # token id -> 0/1
    cells = load_tokenized(token_paths)
    gc_folds, gc_pred = cross_validate_finetuning(cells, labels, model_dir, init="pretrained", settings=s)
    rnd_folds, rnd_pred = cross_validate_finetuning(cells, labels, model_dir, init="random", settings=s)
    lr_folds, lr_pred = cross_validate_logistic(knowledge_features(knowledge_path, labels.index), labels,
                                                s.n_folds, s.seed)
    table = summarise({"genecompass": gc_folds, "random_init": rnd_folds, "knowledge_logistic": lr_folds})
    plot_roc({"genecompass": gc_pred, "random_init": rnd_pred, "knowledge_logistic": lr_pred}, "roc.png")

Fine-tuning reuses the cell-annotation machinery
(:func:`genecompass.tasks.annotation.finetune.build_classifier` and its parameter
groups): AdamW, linear warm-up and decay, gradient clipping, length-grouped
seeded batches, bf16 autocast when asked; a fixed number of epochs and no
validation split (the fold's test genes are the evaluation). On CPU a seed
gives the same predictions, and the caller's torch RNG is left untouched.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
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
    cell_tokens,
    cells_with_tokens,
    length_grouped_batches,
)
from genecompass.devices import autocast_for, resolve_device
from genecompass.errors import InputError
from genecompass.model import GeneCompassConfig, GeneCompassForTokenClassification
from genecompass.tasks.annotation.finetune import (
    FinetuneSettings,
    build_classifier,
    parameter_groups,
)

log = logging.getLogger(__name__)

CLASSES = ("dosage_insensitive", "dosage_sensitive")  # label 0, label 1
FOLD_COLUMNS = ["fold", "n_train_genes", "n_test_genes", "n_test_tokens", "auc_token", "auc_gene"]
PREDICTION_COLUMNS = ["fold", "token_id", "label", "probability", "level"]
METRICS = ("auc_gene", "auc_token")
_CHUNK = 4096  # cells read at once when scanning the corpus


# --------------------------------------------------------------------------- settings


@dataclass
class DosageSettings:
    """Settings of the fine-tuning cross-validation (Geneformer: up to 10,000 cells, 5 folds).

    ``n_cells``: cells drawn (seeded) from the corpus among those with at
    least one labelled gene within the first ``max_length`` genes.
    ``max_length`` (genes per cell) defaults to the model's position table.
    The training fields mean what they mean in
    :class:`~genecompass.tasks.annotation.finetune.FinetuneSettings` and are checked
    the same way; training runs all ``epochs``. ``freeze_layers``: the input
    embeddings and the first ``freeze_layers`` transformer layers keep their
    weights (Geneformer's gene classifier freezes layers too); ``-1`` freezes
    the whole encoder, so only the head learns (a linear probe of the
    contextual gene embeddings, which cannot memorise gene identities).
    """

    n_cells: int = 10000
    n_folds: int = 5
    lr: float = 5e-5
    batch_size: int = 16
    epochs: int = 1
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    max_length: int | None = None
    eval_batch_size: int = 64
    device: str = "auto"
    dtype: str = "float32"
    freeze_layers: int = 0
    seed: int = 0

    def __post_init__(self):
        FinetuneSettings(lr=self.lr, batch_size=self.batch_size, epochs=self.epochs,
                         warmup_ratio=self.warmup_ratio, weight_decay=self.weight_decay, patience=None,
                         max_grad_norm=self.max_grad_norm, max_length=self.max_length,
                         eval_batch_size=self.eval_batch_size, device=self.device, dtype=self.dtype,
                         seed=self.seed)
        if int(self.n_cells) < 1:
            raise InputError(None, "n_cells", f"{self.n_cells} is below 1", "give a positive number of cells")
        if int(self.freeze_layers) < -1:
            raise InputError(None, "freeze_layers", f"{self.freeze_layers}",
                             "give 0 (none), a layer count, or -1 (all)")
        if int(self.n_folds) < 2:
            raise InputError(None, "n_folds", f"{self.n_folds} is below 2", "cross-validation needs 2 or more folds")
        if self.max_length is not None and int(self.max_length) < 1:
            raise InputError(None, "max_length", f"{self.max_length} is below 1",
                             "give a positive number of genes, or None for the model's max_genes")


# --------------------------------------------------------------------------- labels and cells


def token_labels(labels: pd.Series) -> pd.Series:
    """``labels`` checked and normalised: index ``token_id`` (int, sorted), values 0/1 (int), name ``label``.

    Raises :class:`~genecompass.errors.InputError` for missing, repeated or
    negative token ids, labels other than 0/1 (True/False count as 1/0), or a
    single class. Nothing is dropped.
    """
    if not isinstance(labels, pd.Series):
        raise InputError(None, "labels", f"a {type(labels).__name__}", "give a pandas Series token id -> 0/1")
    if labels.empty:
        raise InputError(None, "labels", "no labelled gene", "give dosage-sensitive (1) and -insensitive (0) genes")
    index = pd.Series(labels.index)
    ids = pd.to_numeric(index, errors="coerce")
    if ids.isna().any() or (ids % 1 != 0).any() or (ids < 0).any():
        bad = index[ids.isna() | (ids % 1 != 0) | (ids < 0)].head(5).tolist()
        raise InputError(None, "labels.index", f"not token ids (non-negative integers): {bad}",
                         "index the labels by token id (e.g. genecompass.gene_sets.read_dosage_labels)")
    ids = ids.astype(np.int64)
    if ids.duplicated().any():
        raise InputError(None, "labels.index", f"token ids labelled twice: {ids[ids.duplicated()].head(5).tolist()}",
                         "give each token one label")
    values = labels.astype(object).map(lambda v: int(v) if isinstance(v, (bool, np.bool_)) else v)
    numeric = pd.to_numeric(values, errors="coerce")
    valid = numeric.isin([0, 1]).to_numpy()
    if not valid.all():
        bad = sorted({str(v) for v in labels.to_numpy()[~valid]})[:5]
        raise InputError(None, "labels", f"{int((~valid).sum())} labels are not 0 or 1 (e.g. {bad})",
                         "label dosage-sensitive genes 1 and dosage-insensitive genes 0")
    result = pd.Series(numeric.to_numpy().astype(np.int64), index=pd.Index(ids.to_numpy(), name="token_id"),
                       name="label").sort_index()
    if result.nunique() < 2:
        raise InputError(None, "labels", f"every gene is labelled {int(result.iloc[0])}",
                         "give both dosage-sensitive (1) and dosage-insensitive (0) genes")
    return result


def sample_cells(dataset, labels: pd.Series, n_cells: int, max_length: int, seed: int) -> np.ndarray:
    """Sorted row indices of up to ``n_cells`` seeded random cells with a labelled gene in their first
    ``max_length`` genes.

    The rows are visited in a seeded random order and the first ``n_cells``
    that qualify are kept, so a corpus is read only as far as needed. Raises
    :class:`~genecompass.errors.InputError` when no cell qualifies.
    """
    labels = token_labels(labels)
    if int(n_cells) < 1 or int(max_length) < 1:
        raise InputError(None, "n_cells/max_length", f"{n_cells}, {max_length}", "give positive integers")
    wanted = labels.index.to_numpy()
    order = np.random.default_rng([int(seed), 4]).permutation(len(dataset))
    chosen, n_found = [], 0
    for start in range(0, len(order), _CHUNK):
        part = order[start:start + _CHUNK]
        part = part[cells_with_tokens(dataset, part, wanted, max_length)]
        chosen.append(part)
        n_found += len(part)
        if n_found >= int(n_cells):
            break
    chosen = np.concatenate(chosen)[:int(n_cells)] if chosen else np.zeros(0, dtype=np.int64)
    if len(chosen) == 0:
        raise InputError(None, "labels", f"none of the {len(dataset)} cells has one of the {len(labels)} labelled "
                                         f"genes among its first {max_length} genes",
                         "check that the labels' token ids belong to the corpus's token dictionary and species")
    if len(chosen) < int(n_cells):
        log.info("%d of the %d requested cells have a labelled gene within %d genes", len(chosen), n_cells,
                 max_length)
    return np.sort(chosen).astype(np.int64)


def gene_folds(labels: pd.Series, n_folds: int, seed: int) -> list[np.ndarray]:
    """The test token ids (sorted) of each fold: scikit-learn's seeded, shuffled StratifiedKFold over genes.

    Every gene is tested exactly once; each fold holds about ``1/n_folds`` of
    each class. Raises :class:`~genecompass.errors.InputError` when a class has
    fewer genes than folds.
    """
    from sklearn.model_selection import StratifiedKFold

    labels = token_labels(labels)
    if int(n_folds) < 2:
        raise InputError(None, "n_folds", f"{n_folds} is below 2", "cross-validation needs 2 or more folds")
    counts = labels.value_counts()
    for label in (0, 1):
        if int(counts.get(label, 0)) < int(n_folds):
            raise InputError(None, "labels", f"{int(counts.get(label, 0))} genes of class {label} ({CLASSES[label]}) "
                                             f"for {n_folds} folds",
                             f"give at least {n_folds} genes of each class, or use fewer folds")
    splitter = StratifiedKFold(n_splits=int(n_folds), shuffle=True, random_state=int(seed))
    ids = labels.index.to_numpy()
    return [np.sort(ids[test]) for _, test in splitter.split(np.zeros(len(labels)), labels.to_numpy())]


# --------------------------------------------------------------------------- fine-tuning


def _model_config(model_dir) -> GeneCompassConfig:
    if not (Path(model_dir) / "config.json").is_file():
        raise InputError(model_dir, "config.json", "not a save_pretrained folder",
                         "give a pre-trained model folder (e.g. results/model/<variant>/model)")
    return GeneCompassConfig.from_pretrained(model_dir)


def _max_length(settings: DosageSettings, config: GeneCompassConfig) -> int:
    max_length = int(settings.max_length or config.max_genes)
    if max_length > config.max_genes:
        raise InputError(None, "max_length", f"{max_length} exceeds the model's position table "
                                             f"({config.max_genes} genes)", f"use at most {config.max_genes}")
    return max_length


def _forward(model, batch: dict, device, labels: torch.Tensor | None = None):
    return model(input_ids=batch["input_ids"].to(device), values=batch["values"].to(device),
                 species_ids=batch["species_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                 labels=None if labels is None else labels.to(device))


def finetune_token_classifier(dataset, rows, labels: pd.Series, model_dir, *, init: str = "pretrained",
                              settings: DosageSettings | None = None,
                              progress: bool = False) -> GeneCompassForTokenClassification:
    """Fine-tune GeneCompass's token head on the labelled genes' occurrences in the cells ``rows``.

    Each position's target is the label of its token when the token is in
    ``labels`` (token id -> 0/1) and -100 (ignored) elsewhere; cells of
    ``rows`` without a labelled gene in their first ``max_length`` genes are
    skipped. ``init``: ``pretrained`` or ``random`` (see
    :func:`~genecompass.tasks.annotation.finetune.build_classifier`). All epochs
    run; the model is returned in eval mode. The caller's torch RNG state is
    left untouched.
    """
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    settings = settings or DosageSettings()
    labels = token_labels(labels)
    started = time.time()
    device = resolve_device(settings.device)
    autocast, _ = autocast_for(device, settings.dtype)
    cells = dataset.select_columns(CORPUS_COLUMNS)
    fork_devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        model = build_classifier(model_dir, CLASSES, init=init, seed=settings.seed,
                                 model_class=GeneCompassForTokenClassification)
        cfg = model.config
        max_length = _max_length(settings, cfg)
        if int(labels.index.max()) >= cfg.vocab_size:
            raise InputError(None, "labels.index", f"token ids up to {int(labels.index.max())} for a model of "
                                                   f"{cfg.vocab_size} tokens", "use the model's token dictionary")
        target_of = torch.full((cfg.vocab_size,), IGNORE_INDEX, dtype=torch.long)
        target_of[torch.as_tensor(labels.index.to_numpy())] = torch.as_tensor(labels.to_numpy())
        rows = np.asarray(rows, dtype=np.int64)
        train_rows = rows[cells_with_tokens(cells, rows, labels.index.to_numpy(), max_length)]
        if len(train_rows) == 0:
            raise InputError(None, "rows", f"none of the {len(rows)} cells has a labelled gene among its first "
                                           f"{max_length} genes", "pick cells with sample_cells")
        lengths = cell_lengths(cells, max_length)[train_rows]
        plan = [len(length_grouped_batches(lengths, settings.batch_size, settings.seed, epoch))
                for epoch in range(int(settings.epochs))]
        total_steps = int(sum(plan))
        freeze_encoder_layers(model.genecompass, settings.freeze_layers)
        model.to(device)
        model.train()
        torch.manual_seed(int(settings.seed) + 1)  # dropout stream
        optimizer = torch.optim.AdamW(parameter_groups(model, settings.weight_decay), lr=settings.lr)
        scheduler = get_linear_schedule_with_warmup(optimizer, round(settings.warmup_ratio * total_steps),
                                                    total_steps)
        for epoch in tqdm(range(int(settings.epochs)), desc=f"dosage fine-tune ({init})", disable=not progress):
            batches = [train_rows[b] for b in length_grouped_batches(lengths, settings.batch_size, settings.seed,
                                                                     epoch)]
            reader = BatchReader(cells, batches, max_length, cfg.species_token_ids, cfg.pad_token_id)
            losses = []
            for batch in batch_loader(reader, 0, int(settings.seed) + epoch):
                optimizer.zero_grad(set_to_none=True)
                with autocast():
                    loss = _forward(model, batch, device, target_of[batch["input_ids"]]).loss
                loss.backward()
                if settings.max_grad_norm and settings.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
                optimizer.step()
                scheduler.step()
                losses.append(float(loss.detach()))
            log.info("dosage fine-tuning (%s) epoch %d: mean batch loss %.4f", init, epoch + 1, np.mean(losses))
        model.eval()
    log.info("dosage fine-tuning (%s): %d cells, %d labelled genes, %d steps, %.1f s", init, len(train_rows),
             len(labels), total_steps, time.time() - started)
    return model


def freeze_encoder_layers(encoder, n_layers: int) -> None:
    """Freeze the input embeddings and the first ``n_layers`` layers (``-1``: the whole encoder; 0: nothing)."""
    n_layers = len(encoder.layers) if int(n_layers) < 0 else min(int(n_layers), len(encoder.layers))
    if n_layers == 0:
        return
    frozen = [encoder.embeddings, *encoder.layers[:n_layers]]
    if n_layers == len(encoder.layers) and encoder.final_LayerNorm is not None:
        frozen.append(encoder.final_LayerNorm)
    for module in frozen:
        for parameter in module.parameters():
            parameter.requires_grad_(False)


@torch.no_grad()
def predict_token_probabilities(model, dataset, rows, tokens, max_length: int, batch_size: int = 64,
                                device=None) -> pd.DataFrame:
    """P(dosage-sensitive) at every occurrence of ``tokens`` in the first ``max_length`` genes of ``rows``.

    One row per occurrence: ``row`` (dataset row), ``token_id``,
    ``probability`` (softmax of label 1), sorted by row then rank. The model
    runs in eval mode on ``device`` (default: where it is).
    """
    cfg = model.config
    if device is None:
        device = next(model.parameters()).device
    else:
        device = resolve_device(device)
        model.to(device)
    wanted = torch.as_tensor(np.unique(np.asarray(tokens, dtype=np.int64)))
    rows = np.asarray(rows, dtype=np.int64)
    cells = dataset.select_columns(CORPUS_COLUMNS)
    parts = [pd.DataFrame({"row": np.zeros(0, np.int64), "token_id": np.zeros(0, np.int64),
                           "probability": np.zeros(0, np.float64)})]
    if len(rows) and len(wanted):
        order = np.argsort(-cell_lengths(cells, max_length)[rows], kind="stable")
        batches = [rows[order[i:i + int(batch_size)]] for i in range(0, len(rows), int(batch_size))]
        reader = BatchReader(cells, batches, max_length, cfg.species_token_ids, cfg.pad_token_id)
        was_training = model.training
        model.eval()
        for i, batch_rows in enumerate(batches):
            batch = reader[i]
            hit = torch.isin(batch["input_ids"], wanted) & batch["attention_mask"].bool()
            if not bool(hit.any()):
                continue
            probability = torch.softmax(_forward(model, batch, device).logits.float(), dim=-1)[..., 1].cpu()
            cell = hit.nonzero(as_tuple=True)[0].numpy()
            parts.append(pd.DataFrame({"row": batch_rows[cell], "token_id": batch["input_ids"][hit].numpy(),
                                       "probability": probability[hit].numpy().astype(np.float64)}))
        model.train(was_training)
    frame = pd.concat(parts, ignore_index=True).astype({"row": np.int64, "token_id": np.int64})
    return frame.sort_values("row", kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- cross-validation


def _auc(truth, score) -> float:
    from sklearn.metrics import roc_auc_score

    truth = np.asarray(truth)
    return float(roc_auc_score(truth, score)) if len(np.unique(truth)) == 2 else float("nan")


def _predictions(fold: int, token_ids, truth, probability, level: str) -> pd.DataFrame:
    return pd.DataFrame({"fold": fold, "token_id": np.asarray(token_ids, dtype=np.int64),
                         "label": np.asarray(truth, dtype=np.int64),
                         "probability": np.asarray(probability, dtype=np.float64), "level": level},
                        columns=PREDICTION_COLUMNS)


def _tables(folds: list[dict], predictions: list[pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    table = pd.DataFrame(folds, columns=FOLD_COLUMNS)
    return table, pd.concat(predictions, ignore_index=True)[PREDICTION_COLUMNS]


def cross_validate_finetuning(dataset, labels: pd.Series, model_dir, *, init: str = "pretrained",
                              settings: DosageSettings | None = None,
                              progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gene-stratified cross-validation of token-level fine-tuning (see the module docstring).

    Cells are sampled once (:func:`sample_cells`); the labelled genes that
    occur in them are split into folds (:func:`gene_folds`; genes that never
    occur cannot be tested and are left out, with a warning). Per fold a fresh
    model is fine-tuned on the training genes' occurrences only (the test
    genes' positions are ignored) and predicts the test genes' occurrences.

    Returns ``(folds, predictions)``. ``folds``: ``fold`` (0-based, the index
    in :func:`gene_folds`), ``n_train_genes``, ``n_test_genes``,
    ``n_test_tokens`` (occurrences), ``auc_token`` (ROC-AUC over occurrences),
    ``auc_gene`` (ROC-AUC of each test gene's mean probability).
    ``predictions``: ``fold, token_id, label, probability, level``, one row
    per test occurrence (``level`` "token") and per test gene (``level``
    "gene", the mean over its occurrences).
    """
    settings = settings or DosageSettings()
    labels = token_labels(labels)
    max_length = _max_length(settings, _model_config(model_dir))
    rows = sample_cells(dataset, labels, settings.n_cells, max_length, settings.seed)
    _, present = cell_tokens(dataset, rows, max_length)
    seen = labels.index.isin(present)
    if not seen.all():
        log.warning("%d of the %d labelled genes occur in none of the %d sampled cells; they are not tested",
                    int((~seen).sum()), len(labels), len(rows))
    labels = labels[seen]
    fold_rows, predictions = [], []
    for fold, test in enumerate(gene_folds(labels, settings.n_folds, settings.seed)):
        train = labels.drop(index=test)
        model = finetune_token_classifier(dataset, rows, train, model_dir, init=init, settings=settings,
                                          progress=progress)
        tokens = predict_token_probabilities(model, dataset, rows, test, max_length, settings.eval_batch_size)
        del model
        tokens["label"] = labels.loc[tokens["token_id"]].to_numpy()
        genes = tokens.groupby("token_id", sort=True).agg(label=("label", "first"),
                                                          probability=("probability", "mean"))
        fold_rows.append({"fold": fold, "n_train_genes": len(train), "n_test_genes": len(test),
                          "n_test_tokens": len(tokens), "auc_token": _auc(tokens["label"], tokens["probability"]),
                          "auc_gene": _auc(genes["label"], genes["probability"])})
        predictions += [_predictions(fold, tokens["token_id"], tokens["label"], tokens["probability"], "token"),
                        _predictions(fold, genes.index, genes["label"], genes["probability"], "gene")]
        log.info("dosage CV (%s) fold %d: %d test genes, %d occurrences, AUC gene %.3f, token %.3f", init, fold,
                 len(test), len(tokens), fold_rows[-1]["auc_gene"], fold_rows[-1]["auc_token"])
    return _tables(fold_rows, predictions)


def cross_validate_logistic(features: pd.DataFrame, labels: pd.Series, n_folds: int = 5,
                            seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Logistic regression of the labels on per-gene ``features`` (index token id), gene-stratified folds.

    Only labelled genes with a feature row take part; their folds are
    :func:`gene_folds` of those labels. Per fold: StandardScaler and
    ``LogisticRegression(max_iter=2000, class_weight="balanced")`` fitted on
    the training genes. Returns the tables of
    :func:`cross_validate_finetuning`, with ``n_test_tokens`` and
    ``auc_token`` NaN (there are no occurrences) and ``level`` "gene".
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = token_labels(labels)
    if not isinstance(features, pd.DataFrame) or features.index.has_duplicates:
        raise InputError(None, "features", "not a DataFrame with one row per token id",
                         "give a DataFrame indexed by token id (e.g. knowledge_features)")
    matrix = features.to_numpy(dtype=np.float64)
    if matrix.shape[1] == 0 or not np.isfinite(matrix).all():
        raise InputError(None, "features", f"{matrix.shape[1]} columns, non-finite values: "
                                           f"{bool(matrix.size and not np.isfinite(matrix).all())}",
                         "give at least one finite feature column")
    shared = labels.index.isin(features.index)
    if not shared.all():
        log.warning("%d of the %d labelled genes have no feature row; they are left out", int((~shared).sum()),
                    len(labels))
    labels = labels[shared]
    X = features.loc[labels.index].to_numpy(dtype=np.float64)
    y = labels.to_numpy()
    fold_rows, predictions = [], []
    for fold, test in enumerate(gene_folds(labels, n_folds, seed)):
        is_test = labels.index.isin(test)
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced",
                                                                   random_state=int(seed)))
        model.fit(X[~is_test], y[~is_test])
        probability = model.predict_proba(X[is_test])[:, list(model.classes_).index(1)]
        fold_rows.append({"fold": fold, "n_train_genes": int((~is_test).sum()), "n_test_genes": int(is_test.sum()),
                          "n_test_tokens": np.nan, "auc_token": np.nan, "auc_gene": _auc(y[is_test], probability)})
        predictions.append(_predictions(fold, labels.index[is_test], y[is_test], probability, "gene"))
    return _tables(fold_rows, predictions)


def knowledge_features(knowledge_path, token_ids) -> pd.DataFrame:
    """The prior-knowledge vectors of ``token_ids``, every kind side by side (``<kind>_<i>`` columns).

    ``knowledge_path``: a file of :func:`genecompass.knowledge.assemble.save_knowledge`
    (or a loaded :class:`~genecompass.knowledge.assemble.KnowledgeMatrices`).
    A token without a vector of some kind gets zeros there; tokens with no
    vector of any kind (or outside the file) are dropped. Index ``token_id``, sorted.
    """
    from genecompass.knowledge.assemble import KnowledgeMatrices, load_knowledge

    knowledge = knowledge_path if isinstance(knowledge_path, KnowledgeMatrices) else load_knowledge(knowledge_path)
    token_ids = np.unique(np.asarray(token_ids, dtype=np.int64))
    position = pd.Index(np.asarray(knowledge.token_ids, dtype=np.int64)).get_indexer(token_ids)
    inside = position >= 0
    covered = np.zeros(len(token_ids), dtype=bool)
    blocks = []
    for kind in knowledge.kinds:
        present = inside & np.asarray(knowledge.masks[kind], dtype=bool)[np.where(inside, position, 0)]
        vectors = np.asarray(knowledge.matrices[kind], dtype=np.float64)[np.where(inside, position, 0)]
        blocks.append(pd.DataFrame(np.where(present[:, None], vectors, 0.0), index=token_ids,
                                   columns=[f"{kind}_{i}" for i in range(vectors.shape[1])]))
        covered |= present
    if not covered.any():
        raise InputError(None if isinstance(knowledge_path, KnowledgeMatrices) else knowledge_path, "token_ids",
                         f"none of the {len(token_ids)} tokens has a knowledge vector",
                         "use the knowledge file of the labels' token dictionary")
    if not covered.all():
        log.info("%d of %d tokens have no knowledge vector of any kind; dropped", int((~covered).sum()),
                 len(token_ids))
    frame = pd.concat(blocks, axis=1).loc[covered]
    frame.index.name = "token_id"
    return frame


# --------------------------------------------------------------------------- reporting


def summarise(folds_by_method: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """``method, metric, mean, sd, n_folds`` for auc_gene and auc_token (NaN folds left out; sd 0 for one fold)."""
    records = []
    for method, folds in folds_by_method.items():
        for metric in METRICS:
            values = pd.to_numeric(folds[metric], errors="coerce").dropna() if metric in folds else pd.Series([])
            records.append({"method": method, "metric": metric,
                            "mean": float(values.mean()) if len(values) else np.nan,
                            "sd": float(values.std(ddof=1)) if len(values) > 1 else (0.0 if len(values) else np.nan),
                            "n_folds": len(values)})
    return pd.DataFrame(records, columns=["method", "metric", "mean", "sd", "n_folds"])


def _gene_level(predictions: pd.DataFrame) -> pd.DataFrame:
    """The gene rows of a predictions table (token rows averaged per fold and gene when it has none)."""
    genes = predictions[predictions["level"] == "gene"]
    if len(genes) or not len(predictions):
        return genes
    return predictions.groupby(["fold", "token_id"], as_index=False).agg(label=("label", "first"),
                                                                         probability=("probability", "mean"))


def plot_roc(predictions_by_method: dict[str, pd.DataFrame], path, title: str = "") -> None:
    """Pooled gene-level ROC curve of every method (all folds' test genes together), AUC in the legend."""
    from sklearn.metrics import roc_curve

    from genecompass.plotting import plt, save_figure

    fig, axis = plt.subplots(figsize=(4.2, 4.0))
    for method, predictions in predictions_by_method.items():
        genes = _gene_level(predictions)
        if genes["label"].nunique() < 2:
            log.warning("%s: the predicted genes hold a single class; no ROC curve", method)
            continue
        fpr, tpr, _ = roc_curve(genes["label"], genes["probability"])
        axis.plot(fpr, tpr, lw=1.4, label=f"{method} (AUC {_auc(genes['label'], genes['probability']):.2f})")
    axis.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":", label="chance")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.01)
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.legend(fontsize=7, loc="lower right")
    axis.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
