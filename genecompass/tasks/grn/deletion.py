"""In-silico deletion of a TF and the precision of the genes it moves (GeneCompass Supp. Fig. S4a).

GeneCompass ("Gene embedding analysis", Materials and Methods): a gene is
deleted by removing its token from each cell's ranked transcriptome — the
genes below it move up one rank, as if it were not expressed — and every other
gene's *contextual* embedding (the last layer's output at its position) is
compared before and after. A larger shift means the model ties the gene more
closely to the deleted one. Supp. Fig. S4a ranks genes by that shift and
reports the precision of the top genes against the TF's known (ChIP) targets,
next to the precision of random gene picks.

- :func:`deletion_shift`: per gene token, the mean over the cells that contain
  the TF of ``1 − cos(original embedding, embedding without the TF)``.
- :func:`deletion_precision`: precision@k of the most shifted genes vs the
  known targets, and of ``n_random`` seeded random picks of k genes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from genecompass.errors import InputError


def _check_tf(model, tf_token_id) -> int:
    config = model.config
    special = {int(config.pad_token_id), int(config.mask_token_id), *map(int, config.species_token_ids.values())}
    if isinstance(tf_token_id, bool) or not isinstance(tf_token_id, (int, np.integer)):
        raise InputError(None, "tf_token_id", f"expected an int token id, got {tf_token_id!r}",
                         "map the TF's gene name to its token id with the token dictionary")
    token = int(tf_token_id)
    if not 0 <= token < int(config.vocab_size) or token in special:
        raise InputError(None, "tf_token_id", f"token {token} is not a gene token of the model "
                         f"(vocabulary {config.vocab_size}, special tokens {sorted(special)})",
                         "use the token id of a gene in the model's token dictionary")
    return token


def _batch_tensors(model, cells_batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    for key in ("input_ids", "values", "species_ids"):
        if key not in cells_batch:
            raise InputError(None, "cells_batch", f"no '{key}'",
                             "pass a batch from collate_cells or BatchReader (input_ids, values, species_ids)")
    ids = torch.as_tensor(cells_batch["input_ids"]).long().cpu()
    if ids.ndim != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
        raise InputError(None, "cells_batch", f"input_ids must be (cells × genes), got shape {tuple(ids.shape)}",
                         "pass at least one tokenized cell")
    values = torch.as_tensor(cells_batch["values"]).float().cpu()
    species = torch.as_tensor(cells_batch["species_ids"]).long().cpu().reshape(-1)
    mask = cells_batch.get("attention_mask")
    mask = ids != int(model.config.pad_token_id) if mask is None else torch.as_tensor(mask).bool().cpu()
    if values.shape != ids.shape or mask.shape != ids.shape or species.shape != (ids.shape[0],):
        raise InputError(None, "cells_batch", f"shapes disagree: input_ids {tuple(ids.shape)}, values "
                         f"{tuple(values.shape)}, attention_mask {tuple(mask.shape)}, "
                         f"species_ids {tuple(species.shape)}",
                         "pass a batch from collate_cells or BatchReader")
    return ids, values, mask, species


@torch.no_grad()
def deletion_shift(model, cells_batch, tf_token_id: int, batch_size: int = 32) -> pd.DataFrame:
    """Mean embedding shift ``1 − cos`` of every gene when ``tf_token_id`` is deleted from the cells.

    ``model``: a GeneCompass encoder or pre-training model (its
    ``last_hidden_state``, species token at position 0). ``cells_batch``:
    ranked cells as from :func:`genecompass.model.collate_cells` —
    ``input_ids``, ``values``, ``species_ids``, optional ``attention_mask``.
    Only the cells whose (unpadded) genes include the TF are used; in each,
    the TF's token is removed and the rest of the ranking closes up. Returns
    ``token_id, mean_shift, n_cells`` (cells containing both the TF and the
    gene), most shifted first (ties by token id); the TF itself is not listed.
    ``.attrs``: ``tf_token_id``, ``n_cells`` (cells with the TF), ``n_cells_total``.
    """
    tf = _check_tf(model, tf_token_id)
    ids, values, mask, species = _batch_tensors(model, cells_batch)
    with_tf = ((ids == tf) & mask).any(dim=1)
    if not with_tf.any():
        raise InputError(None, "tf_token_id", f"token {tf} occurs in none of the {ids.shape[0]} cells",
                         "pick a TF expressed in these cells, or pass cells that express it")
    ids, values, mask, species = ids[with_tf], values[with_tf], mask[with_tf], species[with_tf]
    device = next(model.parameters()).device
    pad = int(model.config.pad_token_id)
    vocab = int(model.config.vocab_size)
    sums = torch.zeros(vocab, dtype=torch.float64)
    counts = torch.zeros(vocab, dtype=torch.int64)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, ids.shape[0], batch_size):
            cell_ids, cell_values = ids[start:start + batch_size], values[start:start + batch_size]
            cell_mask, cell_species = mask[start:start + batch_size], species[start:start + batch_size]
            kept = cell_mask & (cell_ids != tf)
            # A stable sort on "not kept" packs the kept genes to the front in their rank order.
            order = torch.argsort((~kept).to(torch.int8), dim=1, stable=True)
            deleted_mask = kept.gather(1, order)
            deleted_ids = cell_ids.gather(1, order).masked_fill(~deleted_mask, pad)
            deleted_values = cell_values.gather(1, order) * deleted_mask
            original = model(input_ids=cell_ids.to(device), values=cell_values.to(device),
                             species_ids=cell_species.to(device),
                             attention_mask=cell_mask.to(device)).last_hidden_state[:, 1:]
            deleted = model(input_ids=deleted_ids.to(device), values=deleted_values.to(device),
                            species_ids=cell_species.to(device),
                            attention_mask=deleted_mask.to(device)).last_hidden_state[:, 1:]
            # Position q of the deleted cell holds the gene from original position order[q].
            aligned = original.gather(1, order.to(device)[..., None].expand(-1, -1, original.shape[-1]))
            shift = (1.0 - F.cosine_similarity(aligned.double(), deleted.double(), dim=-1)).cpu()
            sums.index_add_(0, deleted_ids[deleted_mask], shift[deleted_mask])
            counts.index_add_(0, deleted_ids[deleted_mask], torch.ones_like(deleted_ids[deleted_mask]))
    finally:
        model.train(was_training)
    seen = torch.nonzero(counts > 0).flatten()
    table = pd.DataFrame({"token_id": seen.numpy().astype(np.int64),
                          "mean_shift": (sums[seen] / counts[seen]).numpy(),
                          "n_cells": counts[seen].numpy()})
    table = table.sort_values(["mean_shift", "token_id"], ascending=[False, True], kind="mergesort")
    table = table.reset_index(drop=True)
    table.attrs.update(tf_token_id=tf, n_cells=int(with_tf.sum()), n_cells_total=int(with_tf.numel()))
    return table


def deletion_shift_in_cells(model, cells, tf_token_id: int, rows, *, max_length: int, max_cells: int = 200,
                            seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """:func:`deletion_shift` over up to ``max_cells`` seeded cells among ``rows`` of tokenized ``cells``.

    ``rows``: the rows that hold the TF (e.g. from
    :func:`genecompass.corpus.rows_holding`). Returns the rows used and the
    shift table.
    """
    from genecompass.corpus import BatchReader

    config = model.config
    rows = np.sort(np.random.default_rng(seed).permutation(np.asarray(rows, dtype=np.int64))[:max_cells])
    batch = BatchReader(cells, [rows], max_length, config.species_token_ids, config.pad_token_id)[0]
    return rows, deletion_shift(model, batch, tf_token_id)


def shift_series(shifts) -> pd.Series:
    if isinstance(shifts, pd.DataFrame):
        if not {"token_id", "mean_shift"} <= set(shifts.columns):
            raise InputError(None, "shifts", f"needs columns token_id, mean_shift; has {list(shifts.columns)}",
                             "pass the output of deletion_shift")
        series = pd.Series(shifts["mean_shift"].to_numpy(np.float64), index=shifts["token_id"].to_numpy(np.int64))
    else:
        series = pd.Series(shifts, dtype=np.float64)
        series.index = series.index.astype(np.int64)
    if series.empty:
        raise InputError(None, "shifts", "no genes", "pass the shifts of at least one gene")
    if series.index.duplicated().any() or not np.isfinite(series.to_numpy()).all():
        raise InputError(None, "shifts", "duplicate tokens or non-finite shifts", "pass one finite shift per token")
    return series


def deletion_precision(shifts, known_targets, k_values=(10, 20, 50, 100), n_random: int = 1000,
                       seed: int = 0) -> pd.DataFrame:
    """Precision@k of the most shifted genes against known targets, and of random picks.

    ``shifts``: :func:`deletion_shift`'s table (or token → shift). The
    candidates are the genes with a shift; ``known_targets`` (token ids) count
    only where they are candidates. Genes are ranked by shift, ties by token
    id; k larger than the candidates is cut to their number (``k_used``).
    Random precision is the mean (and SD) over ``n_random`` seeded draws of
    ``k_used`` distinct candidates; ``expected_random`` is its exact mean,
    targets / candidates. One row per k.
    """
    series = shift_series(shifts)
    targets = {int(t) for t in np.asarray(list(known_targets), dtype=np.int64)}
    ranked = np.array(sorted(series.index, key=lambda token: (-series[token], token)), dtype=np.int64)
    is_target = np.isin(ranked, list(targets))
    if not is_target.any():
        raise InputError(None, "known_targets", f"none of the {len(targets)} known targets is among the "
                         f"{len(ranked)} genes with a shift", "give target token ids of genes in the cells")
    ks = [int(k) for k in np.atleast_1d(np.asarray(k_values))]
    if not ks or min(ks) < 1:
        raise InputError(None, "k_values", f"need positive k, got {ks}", "use k values such as 10, 20, 50")
    if int(n_random) < 1:
        raise InputError(None, "n_random", f"need at least one random draw, got {n_random}", "use e.g. 1000")
    rng = np.random.default_rng(seed)
    # A prefix of a uniform random permutation is a uniform random k-subset, for every k at once.
    permutations = np.argsort(rng.random((int(n_random), len(ranked))), axis=1)
    random_hits = np.cumsum(is_target[permutations], axis=1)
    top_hits = np.cumsum(is_target)
    rows = []
    for k in ks:
        used = min(k, len(ranked))
        random_precision = random_hits[:, used - 1] / used
        rows.append({"k": k, "k_used": used, "n_candidates": len(ranked), "n_targets": int(is_target.sum()),
                     "precision": top_hits[used - 1] / used, "random_precision": float(random_precision.mean()),
                     "random_sd": float(random_precision.std()),
                     "expected_random": float(is_target.sum() / len(ranked))})
    return pd.DataFrame(rows)


__all__ = ["deletion_precision", "deletion_shift", "deletion_shift_in_cells"]
