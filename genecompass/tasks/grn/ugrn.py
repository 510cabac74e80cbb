"""Universal GRN (UGRN) inference: pair features from a frozen GeneCompass, and the translator f_phi.

Following "Universal GRN inference" (shared/papers/ugrn-universal-grn-inference-2026):
a frozen foundation model turns every (source, target) gene pair into a
feature vector ``e_ij``; a small classifier, the *translator* ``f_phi``, is
trained on the labelled pairs of one dataset's ground-truth GRN with binary
cross-entropy (paper Eq. 2) and then scores the pairs of *other* datasets
(other genes, other expression) — leave-one-dataset-out.

Feature extractors (all take gene *token ids*, ints, of one species):

- :func:`embedding_pair_features` — baseline "Emb" (paper Eq. 7): the sum of the
  two genes' static encodings (``combine="concat"`` gives the directional
  ``[e_i; e_j; e_i*e_j]`` instead).
- :func:`zero_out_features` — baseline "Pert" (Eq. 6): the change of the
  target's reconstructed value when the source is removed from the dataset's
  mean cell.
- :func:`virtual_value_perturbation` — VVP (Eq. 8): every gene at one virtual
  base value ``v_b``; the target's response to moving the source to each of
  ``M`` target values.
- :func:`gradient_trajectory` — GDT (Eq. 9): ``d x̂_j / d v_i`` with every gene
  at ``v_b,t``, for ``T`` base values.

Virtual cells and the rank order. GeneCompass reads a cell as its expressed
genes sorted by value (descending; the tokenizer breaks ties by ascending token
id) with a position embedding per rank. A virtual cell is built the same way:
its genes at their (virtual or mean) values, sorted by value with ties by token
id. With all genes at ``v_b`` this is ascending token id, independent of the
order in which the caller lists the genes; a source moved above ``v_b`` goes to
rank 0, one moved below goes last, and the other genes shift by one rank — the
cell the tokenizer would have written. Values must be positive: GeneCompass
never sees an expressed gene at 0 (an unexpressed gene is absent from the
cell), which is what :func:`zero_out_features` models by removing the source.

Windows (chunking). A virtual cell holds at most ``capacity`` genes (the
model's ``max_genes``, or a smaller ``window``). A larger gene set is cut, in
base rank order, into ``ceil(n / (capacity // 2))`` near-equal blocks, and the
pair (i, j) is evaluated in the window made of block(i) ∪ block(j) — for two
genes of the same block, that block and the next one (cyclically) — so every
window has at most ``capacity`` genes and contains both genes of each of its
pairs (:func:`plan_windows`). A gene set that fits is a single window: the
paper's virtual cell exactly. The other genes of a window are the pair's
context; chunked features are therefore an approximation of the full cell,
deterministic given the gene set.

The paper concatenates the forward and reverse vectors of a pair
(``[e_ij; e_ji]``); every extractor does so with ``both_directions=True``.
Value grids are not given in the paper; the defaults here span GeneCompass's
value scale, ``log1p(normalised / median)``, where a gene at its corpus median
has ``log(2) ≈ 0.69``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from genecompass.dictionary import PAD_TOKEN_ID
from genecompass.errors import InputError

log = logging.getLogger(__name__)

#: VVP base value: a gene at its corpus median (log1p(1)).
DEFAULT_BASE_VALUE = math.log1p(1.0)
#: VVP target values: the source at 1/4, 1/2, 2, 4 and 8 times its median.
DEFAULT_TARGET_VALUES = tuple(math.log1p(x) for x in (0.25, 0.5, 2.0, 4.0, 8.0))
#: GDT base values: the whole cell at 1/4 … 8 times the median.
DEFAULT_GDT_BASE_VALUES = tuple(math.log1p(x) for x in (0.25, 0.5, 1.0, 2.0, 4.0, 8.0))
TRANSLATOR_KINDS = ("logistic", "mlp")
EMBEDDING_COMBINES = ("sum", "concat")


# --------------------------------------------------------------------------- loading and checks


def load_pretraining_model(model_dir, device: str = "auto"):
    """The full pre-training model (encoder + value head) of a ``save_pretrained`` folder, in eval mode.

    VVP, GDT and the zero-out baseline read the reconstructed values, so they
    need :class:`~genecompass.model.GeneCompassForPretraining`, not the bare
    encoder that :func:`genecompass.embed.load_encoder` returns.
    """
    from genecompass.devices import resolve_device
    from genecompass.model import GeneCompassForPretraining

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise InputError(model_dir, "config.json", "missing; not a save_pretrained folder",
                         "give the pre-training output folder (e.g. results/model/<variant>/model)")
    model = GeneCompassForPretraining.from_pretrained(model_dir)
    return model.to(resolve_device(device)).eval()


@contextlib.contextmanager
def _frozen(model):
    """Eval mode (no dropout) for the duration, then the caller's mode back."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _require_value_head(model) -> None:
    if not hasattr(model, "value_decoder"):
        raise InputError(None, "model", f"{type(model).__name__} has no value head (value_predictions)",
                         "pass a GeneCompassForPretraining (see load_pretraining_model)")


def species_token(model, species) -> int:
    """The species token id for a species name ('human') or id (2); unknown species raise InputError."""
    known = dict(model.config.species_token_ids)
    if isinstance(species, str):
        if species not in known:
            raise InputError(None, "species", f"unknown species '{species}'", f"use one of {sorted(known)}")
        return int(known[species])
    if isinstance(species, (int, np.integer)) and not isinstance(species, bool) and int(species) in known.values():
        return int(species)
    raise InputError(None, "species", f"{species!r} is neither a species name nor a species token id",
                     f"use one of {sorted(known)} or ids {sorted(known.values())}")


def _special_tokens(config) -> set[int]:
    return {int(config.pad_token_id), int(config.mask_token_id), *map(int, config.species_token_ids.values())}


def check_gene_tokens(model, tokens, field: str = "genes") -> np.ndarray:
    """``tokens`` as a 1-D int64 array of distinct gene tokens of the model's vocabulary.

    Special tokens (pad, mask, species) and ids outside the vocabulary are
    input errors, since the model has no gene behind them.
    """
    array = np.asarray(tokens)
    if array.ndim != 1 or array.size == 0:
        raise InputError(None, field, f"expected a non-empty list of token ids, got shape {array.shape}",
                         "pass the gene token ids (ints) as a flat list")
    if not np.issubdtype(array.dtype, np.integer):
        raise InputError(None, field, f"token ids must be integers, got dtype {array.dtype}",
                         "map gene names to token ids with the token dictionary first")
    array = array.astype(np.int64)
    vocab = int(model.config.vocab_size)
    outside = array[(array < 0) | (array >= vocab)]
    if outside.size:
        raise InputError(None, field, f"unknown token id {int(outside[0])} (vocabulary has {vocab} tokens)",
                         "use token ids of the model's token dictionary")
    special = sorted(set(array.tolist()) & _special_tokens(model.config))
    if special:
        raise InputError(None, field, f"token id {special[0]} is a special token (pad, mask or species), not a gene",
                         "drop special tokens from the gene list")
    if np.unique(array).size != array.size:
        values, counts = np.unique(array, return_counts=True)
        raise InputError(None, field, f"token id {int(values[counts > 1][0])} is listed twice",
                         "list every gene once")
    return array


def check_pairs(pairs, genes: np.ndarray) -> np.ndarray:
    """``pairs`` as an (P, 2) int64 array of (source, target) tokens, both among ``genes``, no self-pairs."""
    array = np.asarray(pairs)
    if array.size == 0:
        raise InputError(None, "pairs", "no gene pairs given", "pass at least one (source, target) token pair")
    if array.ndim != 2 or array.shape[1] != 2:
        raise InputError(None, "pairs", f"expected shape (n_pairs, 2), got {array.shape}",
                         "pass (source token, target token) rows")
    if not np.issubdtype(array.dtype, np.integer):
        raise InputError(None, "pairs", f"token ids must be integers, got dtype {array.dtype}",
                         "map gene names to token ids with the token dictionary first")
    array = array.astype(np.int64)
    outside = array[~np.isin(array, genes)]
    if outside.size:
        raise InputError(None, "pairs", f"token id {int(outside[0])} is not among the {len(genes)} genes given",
                         "add the gene to 'genes' or drop its pairs")
    self_rows = np.flatnonzero(array[:, 0] == array[:, 1])
    if self_rows.size:
        raise InputError(None, "pairs", f"row {int(self_rows[0])} pairs token {int(array[self_rows[0], 0])} "
                         "with itself", "leave self-pairs out (GRN candidates exclude self-edges)")
    return array


def _check_values(values, field: str) -> np.ndarray:
    array = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if array.ndim != 1 or array.size == 0:
        raise InputError(None, field, "expected one or more numbers", f"give {field} as a number or a list")
    if not np.isfinite(array).all() or (array <= 0).any():
        raise InputError(None, field, f"values must be finite and positive, got {array.tolist()}",
                         "use positive values on GeneCompass's log1p(normalised / median) scale")
    return array


def _with_reverse(extract: Callable[[np.ndarray], np.ndarray], pairs: np.ndarray,
                  both_directions: bool) -> np.ndarray:
    """``extract(pairs)``, or ``[extract(i→j); extract(j→i)]`` side by side (one call, shared windows)."""
    if not both_directions:
        return extract(pairs)
    n = len(pairs)
    features = extract(np.concatenate([pairs, pairs[:, ::-1]]))
    return np.hstack([features[:n], features[n:]])


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class VirtualWindow:
    """One virtual cell: its genes (in base rank order) and the rows of ``pairs`` evaluated in it."""

    tokens: np.ndarray
    pair_rows: np.ndarray


def _capacity(model, window: int | None) -> int:
    limit = int(model.config.max_position_embeddings) - 1
    capacity = limit if window is None else int(window)
    if capacity < 2 or capacity > limit:
        raise InputError(None, "window", f"{window} genes per virtual cell; the model takes 2 to {limit}",
                         f"set window between 2 and {limit} (or leave it unset)")
    return capacity


def base_rank_order(tokens: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
    """``tokens`` in GeneCompass cell order: value descending, ties by ascending token id."""
    tokens = np.asarray(tokens, dtype=np.int64)
    if values is None:
        return np.sort(tokens)
    return tokens[np.lexsort((tokens, -np.asarray(values, dtype=np.float64)))]


def plan_windows(genes, pairs, capacity: int, values=None) -> list[VirtualWindow]:
    """Split a gene set into virtual cells of at most ``capacity`` genes that hold each pair's two genes.

    ``values`` (aligned with ``genes``) set the base rank order; without them
    all genes tie and the order is ascending token id. See the module
    docstring, "Windows". Every pair row lands in exactly one window; windows
    without pairs are left out.
    """
    genes = np.asarray(genes, dtype=np.int64)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if capacity < 2:
        raise ValueError(f"capacity must be at least 2, got {capacity}")
    ordered = base_rank_order(genes, values)
    if len(ordered) <= capacity:
        return [VirtualWindow(ordered, np.arange(len(pairs)))]
    n_blocks = math.ceil(len(ordered) / (capacity // 2))
    blocks = np.array_split(ordered, n_blocks)
    block_of = {int(token): b for b, block in enumerate(blocks) for token in block}
    keys: dict[tuple[int, int], list[int]] = {}
    for row, (source, target) in enumerate(pairs):
        a, b = block_of[int(source)], block_of[int(target)]
        if a == b:
            b = (a + 1) % n_blocks
        keys.setdefault((min(a, b), max(a, b)), []).append(row)
    return [VirtualWindow(np.concatenate([blocks[a], blocks[b]]), np.asarray(rows, dtype=np.int64))
            for (a, b), rows in sorted(keys.items())]


# --------------------------------------------------------------------------- model calls


def _value_predictions(model, species_id: int, tokens: np.ndarray, values: torch.Tensor,
                       present: torch.Tensor | None = None) -> torch.Tensor:
    """Reconstructed values of virtual cells, in the column order of ``tokens``.

    ``values`` (B × n, on the model's device; may require grad) gives each
    cell's value per column gene; ``present`` (B × n bool) drops genes from a
    cell. Each row is ranked like the tokenizer (present genes first, value
    descending, ties by token id), run through the model, and the predictions
    are put back under their genes; absent genes get 0.
    """
    device = values.device
    batch, n = values.shape
    keep = np.ones((batch, n), dtype=bool) if present is None else present.cpu().numpy()
    token_rows = np.broadcast_to(tokens, (batch, n))
    order = np.lexsort((token_rows, -values.detach().cpu().double().numpy(), ~keep), axis=-1)
    order_t = torch.as_tensor(order, device=device)
    mask = torch.as_tensor(np.take_along_axis(keep, order, axis=1), device=device)
    ids = torch.as_tensor(np.take_along_axis(token_rows, order, axis=1), device=device)
    ids = ids.masked_fill(~mask, int(model.config.pad_token_id))
    ranked_values = torch.gather(values, 1, order_t) * mask
    species = torch.full((batch,), species_id, dtype=torch.long, device=device)
    predictions = model(input_ids=ids, values=ranked_values, species_ids=species,
                        attention_mask=mask).value_predictions
    predictions = predictions * mask
    return torch.zeros_like(predictions).scatter(1, order_t, predictions)


def _local_index(tokens: np.ndarray) -> dict[int, int]:
    return {int(token): i for i, token in enumerate(tokens)}


def _perturbation_responses(model, species_id: int, window: VirtualWindow, base_values: np.ndarray,
                            sources: np.ndarray, perturbations: Sequence[float | None],
                            batch_size: int) -> np.ndarray:
    """Change of every window gene's prediction, (sources × perturbations × genes): M(perturbed) − M(base).

    A perturbation is a new value for the source, or ``None`` to remove the
    source from the cell.
    """
    device = _device(model)
    n = len(window.tokens)
    local = _local_index(window.tokens)
    base = torch.as_tensor(base_values, dtype=torch.float32, device=device)[None]
    base_prediction = _value_predictions(model, species_id, window.tokens, base)[0]
    jobs = [(s, p) for s in range(len(sources)) for p in range(len(perturbations))]
    responses = np.zeros((len(sources), len(perturbations), n), dtype=np.float64)
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        values = base.repeat(len(chunk), 1)
        present = torch.ones((len(chunk), n), dtype=torch.bool, device=device)
        for row, (s, p) in enumerate(chunk):
            column = local[int(sources[s])]
            if perturbations[p] is None:
                present[row, column] = False
            else:
                values[row, column] = float(perturbations[p])
        predictions = _value_predictions(model, species_id, window.tokens, values, present)
        change = (predictions - base_prediction[None]).double().cpu().numpy()
        for row, (s, p) in enumerate(chunk):
            responses[s, p] = change[row]
    return responses


def _window_pair_features(model, species_id: int, genes: np.ndarray, base_values: np.ndarray, pairs: np.ndarray,
                          perturbations: Sequence[float | None], capacity: int, batch_size: int,
                          sign: float = 1.0) -> np.ndarray:
    """Per pair, ``sign ×`` the target's response to each source perturbation, window by window."""
    value_of = dict(zip(genes.tolist(), base_values.tolist()))
    features = np.zeros((len(pairs), len(perturbations)), dtype=np.float64)
    for window in plan_windows(genes, pairs, capacity, base_values):
        window_pairs = pairs[window.pair_rows]
        window_values = np.array([value_of[int(token)] for token in window.tokens], dtype=np.float64)
        sources = np.unique(window_pairs[:, 0])
        responses = _perturbation_responses(model, species_id, window, window_values, sources, perturbations,
                                            batch_size)
        source_row = {int(source): i for i, source in enumerate(sources)}
        local = _local_index(window.tokens)
        rows = np.array([source_row[int(source)] for source in window_pairs[:, 0]])
        columns = np.array([local[int(target)] for target in window_pairs[:, 1]])
        features[window.pair_rows] = sign * responses[rows, :, columns]
    return features


# --------------------------------------------------------------------------- feature extractors


def _static_encodings(model, tokens: np.ndarray, source: str) -> np.ndarray:
    from genecompass.embed import static_gene_embeddings

    encoder = getattr(model, "genecompass", model)
    if source == "static":
        return static_gene_embeddings(encoder, tokens)
    with torch.no_grad():
        ids = torch.as_tensor(tokens, device=_device(model))
        return encoder.embeddings.gene_embeddings(ids).float().cpu().numpy()


def _table_vectors(gene_vectors, tokens: np.ndarray, species) -> np.ndarray:
    """Rows of a (vocab × D) array, or of a gene table with ``token_id`` and ``dim_*`` columns."""
    if isinstance(gene_vectors, pd.DataFrame):
        table = gene_vectors
        if "token_id" not in table.columns:
            raise InputError(None, "gene_vectors", "the table has no token_id column",
                             "pass a gene-embedding table such as contextual_gene_table's output")
        if "species" in table.columns and species is not None:
            table = table[table["species"] == species]
        dims = [c for c in table.columns if str(c).startswith("dim_")]
        if not dims:
            raise InputError(None, "gene_vectors", "the table has no dim_* columns",
                             "pass a gene-embedding table with dim_0 … dim_{D-1} columns")
        if table["token_id"].duplicated().any():
            raise InputError(None, "gene_vectors", "a token has several rows (several species?)",
                             "pass species= to pick one species, or one row per token")
        by_token = pd.DataFrame(table[dims].to_numpy(np.float64), index=table["token_id"].astype(np.int64))
        missing = [int(t) for t in tokens if int(t) not in by_token.index]
        if missing:
            raise InputError(None, "gene_vectors", f"no vector for token {missing[0]} ({len(missing)} tokens lack one)",
                             "restrict the pairs to genes seen in the embedding table")
        return by_token.loc[tokens].to_numpy()
    matrix = np.asarray(gene_vectors, dtype=np.float64)
    if matrix.ndim != 2 or int(tokens.max()) >= matrix.shape[0]:
        raise InputError(None, "gene_vectors", f"expected a (vocab × dims) array indexed by token id, got shape "
                         f"{matrix.shape}", "pass one row per token id, or a table with a token_id column")
    return matrix[tokens]


def embedding_pair_features(model, genes, pairs, *, species=None, gene_vectors="static", combine: str = "sum",
                            both_directions: bool = False) -> np.ndarray:
    """Baseline "Emb": a pair's feature from the two genes' own vectors, without any cell context.

    ``gene_vectors``: ``"static"`` (default) is GeneCompass's static gene
    embedding — the fused ID ⊕ value ⊕ knowledge encoding at value 1.0,
    layer-normalised, no rank position (:func:`genecompass.embed.static_gene_embeddings`);
    it is the model's vocabulary-level encoding of a gene, with the prior
    knowledge that distinguishes GeneCompass. ``"id"`` is the bare ID
    embedding row, the paper's ``E_M`` literally. A (vocab × D) array or a
    gene table (``token_id`` + ``dim_*``, e.g. contextual embeddings; filtered
    to ``species`` when it has a ``species`` column) supplies other vectors.

    ``combine="sum"`` is the paper's Eq. 7, ``e_i + e_j`` (symmetric, so the
    reverse half of ``both_directions`` repeats the forward one);
    ``"concat"`` is ``[e_i; e_j; e_i * e_j]``, which keeps the direction.
    Returns (pairs × D) or (pairs × 3D), float64.
    """
    if combine not in EMBEDDING_COMBINES:
        raise InputError(None, "combine", f"unknown combine '{combine}'", f"use one of {list(EMBEDDING_COMBINES)}")
    genes = check_gene_tokens(model, genes)
    pairs = check_pairs(pairs, genes)
    if species is not None:
        species_token(model, species)
    species_name = species if isinstance(species, str) else None
    if isinstance(gene_vectors, str):
        if gene_vectors not in ("static", "id"):
            raise InputError(None, "gene_vectors", f"unknown vector source '{gene_vectors}'",
                             "use 'static', 'id', a (vocab × D) array or a gene table")
        with _frozen(model):
            vectors = _static_encodings(model, genes, gene_vectors).astype(np.float64)
    else:
        vectors = _table_vectors(gene_vectors, genes, species_name)
    row_of = _local_index(genes)

    def extract(rows: np.ndarray) -> np.ndarray:
        left = vectors[[row_of[int(t)] for t in rows[:, 0]]]
        right = vectors[[row_of[int(t)] for t in rows[:, 1]]]
        return left + right if combine == "sum" else np.hstack([left, right, left * right])

    return _with_reverse(extract, pairs, both_directions)


def mean_profile(cells_batch, genes=None) -> pd.Series:
    """Mean value of each gene token over the cells of a collated batch (absent = 0), the paper's x̄.

    ``cells_batch``: ``input_ids`` and ``values`` (cells × L), optional
    ``attention_mask``. Genes in ``genes`` but in no cell get 0; without
    ``genes``, every token seen is returned. Indexed by token id, ascending.
    """
    ids = torch.as_tensor(cells_batch["input_ids"]).long().cpu()
    if ids.ndim != 2 or ids.shape[0] == 0:
        raise InputError(None, "cells_batch", f"input_ids must be (cells × genes) with cells, got {tuple(ids.shape)}",
                         "pass a batch from collate_cells or BatchReader")
    values = torch.as_tensor(cells_batch["values"]).double().cpu()
    mask = cells_batch.get("attention_mask")
    mask = (ids != PAD_TOKEN_ID) if mask is None else torch.as_tensor(mask).bool().cpu()
    sums = pd.Series(values[mask].numpy()).groupby(ids[mask].numpy()).sum() / ids.shape[0]
    if genes is not None:
        sums = sums.reindex(np.asarray(genes, dtype=np.int64), fill_value=0.0)
    sums.index = sums.index.astype(np.int64)
    return sums.sort_index().rename("mean_value")


def zero_out_features(model, profile, pairs, *, species, window: int | None = None, batch_size: int = 64,
                      both_directions: bool = False) -> np.ndarray:
    """Baseline "Pert" (paper Eq. 6): ``M(x̄)_j − M(x̄ with source i zeroed)_j``, one column.

    ``profile``: the dataset's mean cell x̄ as token → mean value (a Series or
    mapping, e.g. :func:`mean_profile`), or a collated batch of the dataset's
    cells, averaged here. The mean cell holds the genes with a positive mean,
    ranked by it. "Zeroed" means *removed*: in GeneCompass an unexpressed gene
    is absent from the cell (the genes below it move up one rank), the same
    operation as GeneCompass's in-silico deletion. Gene sets larger than the
    model (or ``window``) are chunked as described in the module docstring.
    """
    _require_value_head(model)
    species_id = species_token(model, species)
    if isinstance(profile, Mapping) and "input_ids" in profile:
        profile = mean_profile(profile)
    profile = pd.Series(profile, dtype=np.float64) if not isinstance(profile, pd.Series) else profile
    if profile.empty:
        raise InputError(None, "profile", "the mean profile is empty", "pass token → mean value for the genes")
    if not np.isfinite(profile.to_numpy(np.float64)).all():
        raise InputError(None, "profile", "non-finite mean value", "compute the means from finite expression")
    pairs = check_pairs(pairs, check_gene_tokens(model, np.asarray(profile.index), field="profile"))
    expressed = profile[profile > 0]
    silent = pairs[~np.isin(pairs, expressed.index.to_numpy(np.int64))]
    if silent.size:
        raise InputError(None, "pairs", f"token {int(silent[0])} has mean value 0, so it is not in the mean cell",
                         "leave out pairs with genes never expressed in the dataset")
    genes = expressed.index.to_numpy(np.int64)
    values = expressed.to_numpy(np.float64)
    capacity = _capacity(model, window)
    with _frozen(model), torch.no_grad():
        return _with_reverse(lambda rows: _window_pair_features(
            model, species_id, genes, values, rows, [None], capacity, batch_size, sign=-1.0), pairs, both_directions)


def virtual_value_perturbation(model, genes, pairs, base_value: float = DEFAULT_BASE_VALUE,
                               target_values: Sequence[float] = DEFAULT_TARGET_VALUES, *, species,
                               window: int | None = None, batch_size: int = 64,
                               both_directions: bool = False) -> np.ndarray:
    """VVP (paper Eq. 8): ``e_ij = [M(v_{i←v_p,m})_j − M(v_{i←v_b})_j]`` over the M target values.

    The virtual cell holds ``genes`` (token ids), all at ``base_value``, in
    tokenizer order (ties by ascending token id); for each target value the
    source alone is set to ``v_p`` and re-ranked where that value puts it
    (first above ``v_b``, last below it, unchanged when equal). The reference
    ``M(v_{i←v_b})`` is the all-``v_b`` cell, the same for every source.
    Returns (pairs × M) float64 (× 2 columns with ``both_directions``).
    """
    _require_value_head(model)
    species_id = species_token(model, species)
    genes = check_gene_tokens(model, genes)
    pairs = check_pairs(pairs, genes)
    base = float(_check_values(base_value, "base_value")[0])
    targets = _check_values(target_values, "target_values").tolist()
    capacity = _capacity(model, window)
    base_values = np.full(len(genes), base)
    with _frozen(model), torch.no_grad():
        return _with_reverse(lambda rows: _window_pair_features(
            model, species_id, genes, base_values, rows, targets, capacity, batch_size), pairs, both_directions)


def gradient_trajectory(model, genes, pairs, base_values: Sequence[float] = DEFAULT_GDT_BASE_VALUES, *, species,
                        window: int | None = None, batch_size: int = 32,
                        both_directions: bool = False) -> np.ndarray:
    """GDT (paper Eq. 9): ``e_ij = [∂M(v_{b,t})_j / ∂v_i]`` over the T base values.

    For each base value every gene of the (window's) virtual cell is at
    ``v_b,t``, in tokenizer order; autograd gives the derivative of the
    target's reconstructed value with respect to every input value at once,
    so one backward per (t, target) serves all sources. Targets are batched:
    the cell is repeated once per target and the per-row objectives summed,
    which is exact because cells do not interact. The derivative is taken
    with the rank order held fixed (ranks are piecewise constant in the
    values). Returns (pairs × T) float64 (× 2 columns with ``both_directions``).
    """
    _require_value_head(model)
    species_id = species_token(model, species)
    genes = check_gene_tokens(model, genes)
    pairs = check_pairs(pairs, genes)
    levels = _check_values(base_values, "base_values").tolist()
    capacity = _capacity(model, window)
    device = _device(model)

    def extract(rows: np.ndarray) -> np.ndarray:
        features = np.zeros((len(rows), len(levels)), dtype=np.float64)
        for cell in plan_windows(genes, rows, capacity):
            window_pairs = rows[cell.pair_rows]
            local = _local_index(cell.tokens)
            targets = np.unique(window_pairs[:, 1])
            target_row = {int(target): i for i, target in enumerate(targets)}
            target_columns = torch.as_tensor([local[int(t)] for t in targets], device=device)
            pair_rows = np.array([target_row[int(t)] for t in window_pairs[:, 1]])
            pair_columns = np.array([local[int(s)] for s in window_pairs[:, 0]])
            for t, level in enumerate(levels):
                gradients = np.zeros((len(targets), len(cell.tokens)), dtype=np.float64)
                for start in range(0, len(targets), batch_size):
                    columns = target_columns[start:start + batch_size]
                    values = torch.full((len(columns), len(cell.tokens)), float(level), dtype=torch.float32,
                                        device=device, requires_grad=True)
                    predictions = _value_predictions(model, species_id, cell.tokens, values)
                    objective = predictions.gather(1, columns[:, None]).sum()
                    (gradient,) = torch.autograd.grad(objective, values)
                    gradients[start:start + len(columns)] = gradient.double().cpu().numpy()
                features[cell.pair_rows, t] = gradients[pair_rows, pair_columns]
        return features

    with _frozen(model), torch.enable_grad():
        return _with_reverse(extract, pairs, both_directions)


# --------------------------------------------------------------------------- training pairs


def sample_training_pairs(network: pd.DataFrame, gene_tokens: Mapping[str, int], tfs=None,
                          negative_ratio: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """Labelled TF→gene pairs of one dataset: every true edge and ``negative_ratio`` × as many non-edges.

    ``network``: ground truth with ``Gene1`` (regulator), ``Gene2`` (target)
    (or ``source``, ``target``). ``gene_tokens``: the dataset's genes that have
    a token (gene name → token id); edges with a gene outside it are dropped.
    Sources are ``tfs`` (default: the network's regulators) among those genes.
    Negatives are drawn uniformly, seeded, without replacement, from the
    source→gene pairs that are neither true edges nor self-pairs — the paper's
    balanced 1:1 setting by default; if too few exist, all are taken. Returns
    ``source, target, source_token, target_token, label`` (1 true, 0 not),
    positives first then negatives, each sorted by source and target; counts
    are in ``.attrs``.
    """
    if {"Gene1", "Gene2"} <= set(network.columns):
        edges = network[["Gene1", "Gene2"]]
    elif {"source", "target"} <= set(network.columns):
        edges = network[["source", "target"]]
    else:
        raise InputError(None, "network",
                         f"needs columns Gene1, Gene2 (or source, target); has {list(network.columns)}",
                         "name the regulator column 'Gene1' and the target column 'Gene2'")
    if not np.isfinite(negative_ratio) or negative_ratio < 0:
        raise InputError(None, "negative_ratio", f"must be a non-negative number, got {negative_ratio}",
                         "use 1 for the balanced setting")
    tokens = {str(gene): int(token) for gene, token in gene_tokens.items()}
    shared = pd.Series(tokens).duplicated(keep=False)
    if shared.any():
        raise InputError(None, "gene_tokens", f"genes {shared[shared].index[:2].tolist()} share a token",
                         "keep one gene per token (their pair features would be identical)")
    truth = {(str(a), str(b)) for a, b in edges.itertuples(index=False) if str(a) != str(b)}
    kept = sorted((a, b) for a, b in truth if a in tokens and b in tokens)
    sources = sorted({str(tf) for tf in (tfs if tfs is not None else [a for a, _ in truth])} & tokens.keys())
    source_set = set(sources)
    positives = [(a, b) for a, b in kept if a in source_set]
    if not positives:
        raise InputError(None, "network", "no true edge has a regulator and a target with tokens",
                         "check that gene names match the token dictionary's (symbols vs Ensembl IDs)")
    genes = sorted(tokens)
    positive_set = set(positives)
    candidates = [(a, b) for a in sources for b in genes if a != b and (a, b) not in truth]
    n_negative = min(len(candidates), int(round(negative_ratio * len(positives))))
    if n_negative < round(negative_ratio * len(positives)):
        log.warning("only %d non-edges available for %d requested negatives", len(candidates),
                    int(round(negative_ratio * len(positives))))
    chosen = np.random.default_rng(seed).choice(len(candidates), size=n_negative, replace=False)
    negatives = sorted(candidates[i] for i in chosen)
    rows = [(a, b, 1) for a, b in positives] + [(a, b, 0) for a, b in negatives]
    table = pd.DataFrame(rows, columns=["source", "target", "label"])
    table.insert(2, "source_token", table["source"].map(tokens).astype(np.int64))
    table.insert(3, "target_token", table["target"].map(tokens).astype(np.int64))
    table.attrs.update(n_truth_edges=len(truth), n_positive=len(positives), n_negative=len(negatives),
                       n_truth_dropped=len(truth) - len(positive_set), n_negative_candidates=len(candidates))
    return table


# --------------------------------------------------------------------------- translator


def _check_xy(features, labels, field: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or x.shape[0] == 0:
        raise InputError(None, field, f"features must be (pairs × dims) with pairs, got shape {x.shape}",
                         "pass one feature row per pair")
    if y.shape != (x.shape[0],):
        raise InputError(None, field, f"{y.shape} labels for {x.shape[0]} feature rows", "give one label per row")
    if not np.isfinite(x).all():
        raise InputError(None, field, "non-finite feature values", "drop or fix pairs with NaN/inf features")
    if not np.isin(y, (0, 1)).all() or np.unique(y).size != 2:
        raise InputError(None, field, f"labels must be 0/1 with both classes, got {np.unique(y)[:5].tolist()}",
                         "label true edges 1 and sampled non-edges 0 (see sample_training_pairs)")
    return x, y.astype(np.int64)


def train_translator(features, labels, kind: str = "logistic", seed: int = 0):
    """Fit the translator ``f_phi`` (binary cross-entropy, paper Eq. 2) on standardised pair features.

    ``"logistic"``: L2 logistic regression. ``"mlp"``: the paper's f_phi —
    hidden layers 128 and 64, ReLU, sigmoid output, Adam (lr 1e-3), batch 128,
    50 epochs. Both behind a StandardScaler fitted on the training pairs only;
    seeded. Returns a fitted scikit-learn Pipeline.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _check_xy(features, labels, "features")
    if kind == "logistic":
        classifier = LogisticRegression(max_iter=5000, random_state=seed)
    elif kind == "mlp":
        classifier = MLPClassifier(hidden_layer_sizes=(128, 64), activation="relu", solver="adam",
                                   learning_rate_init=1e-3, batch_size=128, max_iter=50, shuffle=True,
                                   random_state=seed)
    else:
        raise InputError(None, "kind", f"unknown translator '{kind}'", f"use one of {list(TRANSLATOR_KINDS)}")
    translator = make_pipeline(StandardScaler(), classifier)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 50 epochs is the paper's budget, not convergence
        translator.fit(x, y)
    return translator


def predict_translator(translator, features, output: str = "logit") -> np.ndarray:
    """Scores of pairs: ``"logit"`` (default; what the ensemble averages) or ``"probability"``."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise InputError(None, "features", f"expected finite (pairs × dims) features, got shape {x.shape}",
                         "pass features from the same extractor the translator was trained on")
    expected = getattr(translator, "n_features_in_", x.shape[1])
    if x.shape[1] != expected:
        raise InputError(None, "features", f"{x.shape[1]} feature columns; the translator was trained on {expected}",
                         "use the same extractor and settings for training and prediction")
    if output not in ("logit", "probability"):
        raise InputError(None, "output", f"unknown output '{output}'", "use 'logit' or 'probability'")
    logits = _logits(translator, x)
    return logits if output == "logit" else 1.0 / (1.0 + np.exp(-logits))


def _logits(translator, x: np.ndarray) -> np.ndarray:
    """Pre-sigmoid scores; for the MLP recomputed from its weights, since probabilities saturate at 0 and 1."""
    from sklearn.neural_network import MLPClassifier

    final = translator[-1] if hasattr(translator, "steps") else translator
    inputs = translator[:-1].transform(x) if hasattr(translator, "steps") else x
    if hasattr(final, "decision_function"):
        return np.asarray(final.decision_function(inputs), dtype=np.float64).ravel()
    if isinstance(final, MLPClassifier) and final.activation == "relu" and final.out_activation_ == "logistic":
        hidden = np.asarray(inputs, dtype=np.float64)
        for weights, bias in zip(final.coefs_[:-1], final.intercepts_[:-1]):
            hidden = np.maximum(hidden @ weights + bias, 0.0)
        return (hidden @ final.coefs_[-1] + final.intercepts_[-1]).ravel()
    p = np.clip(final.predict_proba(inputs)[:, 1].astype(np.float64), 1e-15, 1 - 1e-15)
    return np.log(p) - np.log1p(-p)


def ensemble_logits(*logit_arrays) -> np.ndarray:
    """The paper's Ensemble (Ens): the mean of several translators' logits for the same pairs (e.g. VVP, GDT)."""
    if not logit_arrays:
        raise InputError(None, "logit_arrays", "no logits given", "pass the logits of at least one translator")
    arrays = [np.asarray(a, dtype=np.float64) for a in logit_arrays]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise InputError(None, "logit_arrays", f"shapes differ: {sorted(shapes)}",
                         "score the same pairs, in the same order, with every translator")
    return np.mean(np.stack(arrays), axis=0)


def translator_scores(labels, scores) -> dict:
    """AUPRC (average precision) and AUROC of scores against 0/1 labels."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(labels).astype(np.int64)
    s = np.asarray(scores, dtype=np.float64)
    return {"n_pairs": int(y.size), "n_positive": int(y.sum()), "auprc": float(average_precision_score(y, s)),
            "auroc": float(roc_auc_score(y, s))}


def leave_one_dataset_out(datasets: Mapping[str, tuple], kind: str = "logistic", seed: int = 0,
                          return_logits: bool = False):
    """The UGRN protocol: train on each dataset's GRN alone, evaluate on every other dataset.

    ``datasets``: name → ``(features, labels)`` of that dataset's labelled
    pairs, all from the same extractor. For every ordered pair (train ≠ test)
    a translator fitted only on the train dataset scores the test dataset's
    pairs; so each dataset serves once as the training source (paper Tables
    1-2: train on hESC, test on the rest) and is held out from every other
    dataset's translator. Returns one row per (train, test):
    ``train_dataset, test_dataset, n_pairs, n_positive, auprc, auroc``; with
    ``return_logits`` also ``{(train, test): logits}`` for ensembling.
    """
    if len(datasets) < 2:
        raise InputError(None, "datasets", f"{len(datasets)} dataset(s); leave-one-out needs at least two",
                         "pass the labelled pairs of two or more datasets")
    checked = {name: _check_xy(x, y, f"datasets['{name}']") for name, (x, y) in datasets.items()}
    widths = {name: x.shape[1] for name, (x, _) in checked.items()}
    if len(set(widths.values())) != 1:
        raise InputError(None, "datasets", f"feature widths differ between datasets: {widths}",
                         "extract every dataset's features with the same method and settings")
    rows, logits = [], {}
    for train_name, (train_x, train_y) in checked.items():
        translator = train_translator(train_x, train_y, kind=kind, seed=seed)
        for test_name, (test_x, test_y) in checked.items():
            if test_name == train_name:
                continue
            scores = predict_translator(translator, test_x)
            logits[(train_name, test_name)] = scores
            rows.append({"train_dataset": train_name, "test_dataset": test_name,
                         **translator_scores(test_y, scores)})
    table = pd.DataFrame(rows, columns=["train_dataset", "test_dataset", "n_pairs", "n_positive", "auprc", "auroc"])
    return (table, logits) if return_logits else table


__all__ = [
    "DEFAULT_BASE_VALUE", "DEFAULT_GDT_BASE_VALUES", "DEFAULT_TARGET_VALUES", "TRANSLATOR_KINDS", "VirtualWindow",
    "base_rank_order", "check_gene_tokens", "check_pairs", "embedding_pair_features", "ensemble_logits",
    "gradient_trajectory", "leave_one_dataset_out", "load_pretraining_model", "mean_profile", "plan_windows",
    "predict_translator", "sample_training_pairs", "species_token", "train_translator", "translator_scores",
    "virtual_value_perturbation", "zero_out_features",
]
