"""In-silico perturbation of ranked cells and the cell-state shift it causes (GeneCompass Fig. 6a–c).

A tokenized cell is its genes ranked by value, highest first, where a value is
``log1p(normalised expression / the gene's corpus median)`` (see
:mod:`genecompass.tokenize`): a gene at its corpus median has value
``log1p(1)``. GeneCompass ("In silico quantitative perturbation", Materials
and Methods) perturbs a cell by changing that ranking and reads the cell
embedding (the output at the species token, position 0) before and after:

- **delete**: the gene's token is removed; the genes below move up one rank.
- **scale** (quantitative knockout): the gene's normalised expression is
  multiplied by ``factor`` (½, ¼, …), i.e. its value becomes
  ``log1p(expm1(v) · factor)``, and the cell is re-ranked; ``factor`` 0 is a
  deletion.
- **overexpress**: the gene's normalised expression is *set* to a level —
  ``"median"`` (its corpus median, value ``log1p(1)``), ``"max"`` (the cell's
  highest value, so the gene joins the top of the ranking) or a number ``x``
  (``x`` times its corpus median, value ``log1p(x)``). A gene absent from the
  cell is inserted; a gene already present gets exactly that value, even when
  it was higher before (then "overexpression" lowers it: the level is a set
  point, not a floor).

A :class:`Perturbation` names one or more genes, all changed together (a
combination such as OSKM). :func:`apply_perturbation` applies it to a cell's
FULL stored ranking (which may be longer than the model reads), re-ranks by
value descending, ties by ascending token id (the tokenizer's rule), and only
then cuts at the model's length — so a gene stored beyond the model's reach
can enter it by overexpression, and a deleted gene's place is taken by the
next stored gene. A gene absent from the stored ranking may still be expressed
beyond the tokenizer's ``max_length``; overexpression inserts it all the same.

The paper's knockouts use only the cells where every knocked-out gene ranks
in the top 50% of the cell's genes (:func:`knockout_rows`); overexpression
uses all given cells.

The shift towards a target state T (a target-state centroid,
:func:`centroid`) is, per cell, ``cos(S′, T) − cos(S, T)`` with S and S′ the
cell embedding before and after (:func:`state_shift`); the paper's ``sim`` is
its mean over the perturbed cells.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from genecompass.corpus import collate_cells
from genecompass.errors import InputError

KINDS = ("delete", "scale", "overexpress")
LEVELS = ("median", "max")
MEDIAN_VALUE = math.log1p(1.0)  # the value of a gene at its corpus median


def _token_tuple(token_ids, field: str) -> tuple[int, ...]:
    """Distinct int token ids (an int, a list or an array), in the given order."""
    if isinstance(token_ids, (int, np.integer)) and not isinstance(token_ids, bool):
        token_ids = (token_ids,)
    try:
        items = list(token_ids)
    except TypeError:
        raise InputError(None, field, f"expected token ids, got {token_ids!r}",
                         "pass a list of int gene token ids") from None
    if not items:
        raise InputError(None, field, "no token id given", "name at least one gene token id")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)) or int(item) < 0:
            raise InputError(None, field, f"{item!r} is not a token id (a non-negative int)",
                             "map gene names to token ids with the token dictionary")
    tokens = tuple(int(item) for item in items)
    if len(set(tokens)) != len(tokens):
        raise InputError(None, field, f"repeated token ids in {list(tokens)}", "name each gene once")
    return tokens


def gene_tokens(model, token_ids, field: str) -> np.ndarray:
    """``token_ids`` as an int64 array, after checking each is a gene token of ``model`` (not special)."""
    config = model.config
    tokens = np.asarray(_token_tuple(token_ids, field), dtype=np.int64)
    special = {int(config.pad_token_id), int(config.mask_token_id), *map(int, config.species_token_ids.values())}
    bad = [int(t) for t in tokens if t >= int(config.vocab_size) or int(t) in special]
    if bad:
        raise InputError(None, field, f"token(s) {bad[:10]} are not a gene token of the model "
                         f"(vocabulary {config.vocab_size}, special tokens {sorted(special)})",
                         "use token ids of genes in the model's token dictionary")
    return tokens


@dataclass(frozen=True)
class Perturbation:
    """A change of one or more genes of a cell, applied by :func:`apply_perturbation`.

    ``kind``: ``"delete"``, ``"scale"`` (``factor`` in [0, 1): a knockdown;
    0 deletes) or ``"overexpress"`` (``level``: ``"median"`` — the default —,
    ``"max"`` or a positive number, the expression as a multiple of the
    gene's corpus median). ``token_ids``: the genes, all changed together
    (an int or a list is accepted and stored as a tuple).
    """

    kind: str
    token_ids: tuple[int, ...]
    factor: float | None = None
    level: str | float | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise InputError(None, "kind", f"unknown perturbation kind {self.kind!r}", f"use one of {list(KINDS)}")
        object.__setattr__(self, "token_ids", _token_tuple(self.token_ids, "token_ids"))
        if self.kind == "scale":
            factor = self.factor
            if isinstance(factor, bool) or not isinstance(factor, (int, float, np.integer, np.floating)) \
                    or not 0.0 <= float(factor) < 1.0:
                raise InputError(None, "factor", f"a scale factor must be a number in [0, 1), got {factor!r}",
                                 "use e.g. 0.5 or 0.25 (a knockdown; 0 deletes; use 'overexpress' to raise)")
            object.__setattr__(self, "factor", float(factor))
        elif self.factor is not None:
            raise InputError(None, "factor", f"only 'scale' takes a factor, not {self.kind!r}",
                             "leave factor unset, or use kind 'scale'")
        if self.kind == "overexpress":
            level = "median" if self.level is None else self.level
            if isinstance(level, str):
                if level not in LEVELS:
                    raise InputError(None, "level", f"unknown overexpression level {level!r}",
                                     f"use one of {list(LEVELS)} or a positive number (multiple of the median)")
            elif isinstance(level, bool) or not isinstance(level, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(float(level)) or float(level) <= 0:
                raise InputError(None, "level", f"an overexpression level must be 'median', 'max' or a positive "
                                 f"finite number, got {level!r}", "use e.g. 'median', 'max' or 2.0")
            else:
                level = float(level)
            object.__setattr__(self, "level", level)
        elif self.level is not None:
            raise InputError(None, "level", f"only 'overexpress' takes a level, not {self.kind!r}",
                             "leave level unset, or use kind 'overexpress'")

    @property
    def name(self) -> str:
        """``delete:12``, ``scale0.5:12+40``, ``overexpress_median:7``, ``overexpress_2:7``."""
        genes = "+".join(str(t) for t in self.token_ids)
        if self.kind == "scale":
            return f"scale{self.factor:g}:{genes}"
        if self.kind == "overexpress":
            level = self.level if isinstance(self.level, str) else f"{self.level:g}"
            return f"overexpress_{level}:{genes}"
        return f"delete:{genes}"


def apply_perturbation(input_ids, values, perturbation: Perturbation,
                       max_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The perturbed cell: ``(input_ids int64, values float32)``, re-ranked, cut at ``max_length``.

    ``input_ids``/``values``: the cell's full stored ranking. Knocked-out genes
    absent from the cell are left alone; overexpressed ones are inserted. The
    result is ordered by value descending, ties by ascending token id, and
    only then cut to ``max_length`` genes (no cut when None).
    """
    if not isinstance(perturbation, Perturbation):
        raise InputError(None, "perturbation", f"expected a Perturbation, got {type(perturbation).__name__}",
                         "build one with Perturbation(kind, token_ids, ...)")
    ids = np.asarray(input_ids, dtype=np.int64).reshape(-1)
    vals = np.asarray(values, dtype=np.float32).reshape(-1)
    if ids.shape != vals.shape:
        raise InputError(None, "values", f"{vals.size} values for {ids.size} genes", "pass one value per gene")
    if max_length is not None and int(max_length) < 1:
        raise InputError(None, "max_length", f"must be at least 1, got {max_length}", "use the model's max_genes")
    genes = np.asarray(perturbation.token_ids, dtype=np.int64)
    hit = np.isin(ids, genes)
    kind = perturbation.kind
    if kind == "delete" or (kind == "scale" and perturbation.factor == 0.0):
        ids, vals = ids[~hit], vals[~hit]
    elif kind == "scale":
        vals = vals.copy()
        vals[hit] = np.log1p(np.expm1(vals[hit].astype(np.float64)) * perturbation.factor).astype(np.float32)
    else:
        level = perturbation.level
        if level == "max":
            if vals.size == 0:
                raise InputError(None, "level", "'max' needs a cell with at least one gene",
                                 "use 'median' or a number for empty cells")
            value = float(vals.max())
        else:
            value = MEDIAN_VALUE if level == "median" else math.log1p(level)
        ids = np.concatenate([ids[~hit], genes])
        vals = np.concatenate([vals[~hit], np.full(genes.size, value, dtype=np.float32)])
    order = np.lexsort((ids, -vals))  # last key first: value descending, then token id ascending
    ids, vals = ids[order], vals[order]
    if max_length is not None:
        ids, vals = ids[:int(max_length)], vals[:int(max_length)]
    return ids, vals


# --------------------------------------------------------------------------- reading corpus rows


def _is_arrow(dataset) -> bool:
    return hasattr(dataset, "column_names") and hasattr(dataset, "select_columns")


def _read_cells(dataset, indices: np.ndarray, columns: list[str]) -> list[dict]:
    """Rows ``indices`` of a datasets.Dataset (or a list of dicts) as dicts of ``columns`` (``length`` optional)."""
    if _is_arrow(dataset):
        present = [c for c in columns if c in dataset.column_names]
        missing = [c for c in columns if c not in present and c != "length"]
        if missing:
            raise InputError(None, "dataset", f"no column(s) {missing}",
                             "pass a tokenized sample (load_tokenized): input_ids, values, length, species")
        # The numpy format hands each row's list over as an array, several times faster than Python lists.
        block = dataset.select_columns(present).with_format("numpy")[[int(i) for i in indices]]
        cells = [dict(zip(present, row)) for row in zip(*(block[c] for c in present))]
    else:
        cells = []
        for i in indices:
            row = dataset[int(i)]
            missing = [c for c in columns if c not in row and c != "length"]
            if missing:
                raise InputError(None, "dataset", f"row {int(i)} has no {missing}",
                                 "pass rows with input_ids, values, length, species")
            cells.append({c: row[c] for c in columns if c in row})
    for cell in cells:
        n = len(cell["input_ids"])
        stored = cell.get("length")
        cell["length"] = n if stored is None else min(int(stored), n)
    return cells


def _check_rows(dataset, rows) -> np.ndarray:
    rows = np.asarray(rows)
    if rows.ndim != 1 or rows.size == 0 or not np.issubdtype(rows.dtype, np.integer):
        raise InputError(None, "rows", f"expected a non-empty list of integer row indices, got {rows.dtype} "
                         f"of shape {rows.shape}", "pass the dataset rows of the cells to embed (e.g. knockout_rows)")
    rows = rows.astype(np.int64)
    n = len(dataset)
    if rows.min() < 0 or rows.max() >= n:
        raise InputError(None, "rows", f"row indices must lie in [0, {n}), got {int(rows.min())}..{int(rows.max())}",
                         "pass positions of cells in this dataset")
    return rows


def knockout_rows(dataset, token_ids, top_fraction: float = 0.5) -> np.ndarray:
    """Rows (ascending) where every one of ``token_ids`` ranks within the top fraction of the cell's genes.

    The paper's knockout rule: a gene at 1-based rank ``r`` among the cell's
    ``n`` stored genes qualifies when ``r ≤ top_fraction · n`` (with 0.5: the
    top half; a cell of 5 genes admits ranks 1–2). A cell lacking any of the
    genes is left out.
    """
    tokens = np.asarray(_token_tuple(token_ids, "token_ids"), dtype=np.int64)
    if isinstance(top_fraction, bool) or not isinstance(top_fraction, (int, float, np.floating)) \
            or not 0.0 < float(top_fraction) <= 1.0:
        raise InputError(None, "top_fraction", f"must be in (0, 1], got {top_fraction!r}",
                         "use 0.5, the paper's top-50% rule")
    chosen = []
    chunk = 1024
    for start in range(0, len(dataset), chunk):
        indices = np.arange(start, min(start + chunk, len(dataset)))
        for index, cell in zip(indices, _read_cells(dataset, indices, ["input_ids", "length"])):
            ids = np.asarray(cell["input_ids"][:cell["length"]], dtype=np.int64)
            limit = math.floor(float(top_fraction) * ids.size + 1e-9)
            if np.isin(tokens, ids[:limit]).all():
                chosen.append(int(index))
    return np.asarray(chosen, dtype=np.int64)


# --------------------------------------------------------------------------- cell embeddings


def _max_length(config, max_length) -> int:
    limit = int(config.max_genes)
    if max_length is None:
        return limit
    if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or not 1 <= max_length <= limit:
        raise InputError(None, "max_length", f"must be an int in [1, {limit}] (the model's max_genes), "
                         f"got {max_length!r}", "leave it unset to read as many genes as the model can")
    return int(max_length)


def _stored_lengths(dataset, rows: np.ndarray) -> np.ndarray:
    if _is_arrow(dataset) and "length" in dataset.column_names:
        return np.asarray(dataset.select_columns(["length"])[[int(r) for r in rows]]["length"], dtype=np.int64)
    return np.asarray([cell["length"] for cell in _read_cells(dataset, rows, ["input_ids", "length"])],
                      dtype=np.int64)


def _device(module) -> torch.device:
    tensor = next(itertools.chain(module.parameters(), module.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


POOLINGS = ("mean", "species")


@torch.no_grad()
def cell_embeddings(model, dataset, rows, *, max_length: int | None = None, batch_size: int = 64,
                    perturbation: Perturbation | None = None, pooling: str = "mean", exclude=(),
                    progress: bool = False) -> np.ndarray:
    """Cell embeddings (``len(rows) × hidden``, float32) of the given dataset rows, in ``rows`` order.

    ``model``: a GeneCompass encoder, or any model with one as ``.genecompass``
    (the pre-training and fine-tuning classes; only the encoder runs).
    ``dataset``: a tokenized sample (``input_ids, values, length, species``;
    a datasets.Dataset or a list of row dicts). With ``perturbation`` each
    cell's full stored ranking is perturbed (:func:`apply_perturbation`)
    before the cut at ``max_length`` (default: the model's ``max_genes``).
    Runs in eval mode without gradients on the model's device, cells of
    similar length batched together; the model's train mode is restored.

    ``pooling``: ``mean`` (Geneformer's in-silico perturbation) averages the
    gene outputs, leaving out the perturbed genes and ``exclude`` — so a shift
    comes from how the other genes respond, not from the changed genes' own
    vectors (give the same ``exclude`` for the unperturbed cells);
    ``species``: the output at the species token (the cell embedding of
    :mod:`genecompass.embed`).
    """
    from tqdm.auto import tqdm

    config = model.config
    encoder = getattr(model, "genecompass", model)
    length_cap = _max_length(config, max_length)
    rows = _check_rows(dataset, rows)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(None, "batch_size", f"must be a positive int, got {batch_size!r}", "use e.g. 64")
    if perturbation is not None:
        if not isinstance(perturbation, Perturbation):
            raise InputError(None, "perturbation", f"expected a Perturbation, got {type(perturbation).__name__}",
                             "build one with Perturbation(kind, token_ids, ...)")
        gene_tokens(model, perturbation.token_ids, "perturbation.token_ids")
    if pooling not in POOLINGS:
        raise InputError(None, "pooling", f"'{pooling}'", f"use one of {list(POOLINGS)}")
    left_out = {int(t) for t in exclude}
    if perturbation is not None and pooling == "mean":
        left_out |= set(perturbation.token_ids)
    left_out = torch.as_tensor(sorted(left_out), dtype=torch.long)
    # Longest first, so that a batch holds cells of similar length (little padding).
    order = np.argsort(-np.minimum(_stored_lengths(dataset, rows), length_cap), kind="stable")
    device = _device(encoder)
    result = None
    was_training = model.training
    model.eval()
    try:
        starts = range(0, rows.size, int(batch_size))
        for start in tqdm(starts, desc="cell embeddings", unit="batch", disable=not progress, mininterval=5):
            positions = order[start:start + int(batch_size)]
            cells = []
            for cell in _read_cells(dataset, rows[positions], ["input_ids", "values", "length", "species"]):
                ids, vals = cell["input_ids"][:cell["length"]], cell["values"][:cell["length"]]
                if perturbation is not None:
                    ids, vals = apply_perturbation(ids, vals, perturbation, length_cap)
                cells.append({"input_ids": ids, "values": vals, "length": len(ids), "species": str(cell["species"])})
            try:
                batch = collate_cells(cells, length_cap, config.species_token_ids, config.pad_token_id)
            except ValueError as error:
                raise InputError(None, "dataset", str(error), "pass tokenized cells of the model's species") from None
            output = encoder(input_ids=batch["input_ids"].to(device), values=batch["values"].to(device),
                             species_ids=batch["species_ids"].to(device),
                             attention_mask=batch["attention_mask"].to(device))
            if pooling == "species":
                pooled = getattr(output, "pooler_output", None)
                if pooled is None:
                    pooled = output.last_hidden_state[:, 0]
            else:
                kept = batch["attention_mask"].bool() & ~torch.isin(batch["input_ids"], left_out)
                kept = kept.to(device)[..., None]
                pooled = (output.last_hidden_state[:, 1:] * kept).sum(dim=1) / kept.sum(dim=1).clamp(min=1)
            pooled = pooled.float().cpu().numpy()
            if result is None:
                result = np.empty((rows.size, pooled.shape[1]), dtype=np.float32)
            result[positions] = pooled
    finally:
        model.train(was_training)
    return result


# --------------------------------------------------------------------------- state shift


def _as_matrix(array, field: str) -> np.ndarray:
    matrix = np.asarray(array, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise InputError(None, field, f"expected cells × hidden embeddings, got shape {matrix.shape}",
                         "pass the output of cell_embeddings")
    return matrix


def _cosine_to(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return matrix @ vector / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(vector))


def state_shift(original, perturbed, target, origin=None) -> np.ndarray:
    """Per cell ``cos(S′, T) − cos(S, T)`` (float64): > 0 when the perturbation moves the cell towards ``target``.

    ``original``/``perturbed``: the cells' embeddings before and after (same
    cells, same order); ``target``: one vector, e.g. a target state's
    :func:`centroid`. A cell with a zero embedding gives NaN. ``origin``: a
    vector subtracted from all three first. Transformer outputs share a large
    common component that pushes every cosine towards 1; measured around the
    mean of the cells compared (e.g. the source and target centroids' mean),
    the cosines see the directions in which the states differ.
    """
    before = _as_matrix(original, "original")
    after = _as_matrix(perturbed, "perturbed")
    if after.shape != before.shape:
        raise InputError(None, "perturbed", f"shape {after.shape} differs from original {before.shape}",
                         "embed the same cells before and after the perturbation")
    goal = np.asarray(target, dtype=np.float64).reshape(-1)
    if goal.shape != (before.shape[1],):
        raise InputError(None, "target", f"expected one vector of {before.shape[1]} values, got shape "
                         f"{np.shape(target)}", "pass one centroid (centroid(embeddings))")
    if not np.isfinite(goal).all() or not np.linalg.norm(goal) > 0:
        raise InputError(None, "target", "the target vector is zero or not finite",
                         "pass the centroid of the target state's cell embeddings")
    if origin is not None:
        centre = np.asarray(origin, dtype=np.float64).reshape(-1)
        if centre.shape != goal.shape:
            raise InputError(None, "origin", f"expected one vector of {goal.size} values, got shape "
                             f"{np.shape(origin)}", "pass the mean of the compared states' centroids")
        before, after, goal = before - centre, after - centre, goal - centre
    return _cosine_to(after, goal) - _cosine_to(before, goal)


def centroid(embeddings) -> np.ndarray:
    """The mean cell embedding (float64) of a state's cells."""
    return _as_matrix(embeddings, "embeddings").mean(axis=0)


__all__ = ["KINDS", "LEVELS", "MEDIAN_VALUE", "Perturbation", "apply_perturbation", "cell_embeddings",
           "centroid", "gene_tokens", "knockout_rows", "state_shift"]
