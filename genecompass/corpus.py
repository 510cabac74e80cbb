"""The token corpus as the models read it: shards and splits, length-grouped batches, collation, masking.

Used by pretraining, embedding extraction, fine-tuning and every task that runs a model
(``docs/formats.md``, "Shards" and "Corpus"). Rows are read memory-mapped (``datasets``), only those of
the current batch; collation pads a batch to its longest cell; masking picks the genes the
pretraining objective recovers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from genecompass.dictionary import SPECIES_TOKEN_IDS
from genecompass.errors import InputError

# The columns a model reads from a tokenized sample or the corpus.
CORPUS_COLUMNS = ("input_ids", "values", "length", "species")
# The label of a position no loss reads (torch's cross-entropy ignore_index).
IGNORE_INDEX = -100


def load_tokenized(paths: Sequence) -> datasets.Dataset:  # noqa: F821 (imported inside)
    """The tokenized samples (Arrow shards), memory-mapped and concatenated in the given order."""
    import datasets

    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError(None, "token_paths", "no tokenized sample given", "pass one or more .arrow shards")
    shards = []
    for path in paths:
        if not path.is_file():
            raise InputError(path, "path", "no such tokenized sample", "run the tokens rule for this sample")
        shards.append(datasets.Dataset.from_file(str(path)))
    return shards[0] if len(shards) == 1 else datasets.concatenate_datasets(shards)


# --------------------------------------------------------------------------- batching


def length_grouped_batches(lengths, batch_size: int, seed: int, epoch: int = 0,
                           mega_batch_factor: int = 50) -> list[np.ndarray]:
    """Seeded length-grouped batches of cell indices for one epoch.

    Cells are shuffled, cut into mega-batches of ``mega_batch_factor ×
    batch_size``, each mega-batch is sorted by length (longest first) and cut
    into batches, and the order of the batches is shuffled. Every cell appears
    once; the last batch of a mega-batch may be short.
    """
    lengths = np.asarray(lengths)
    rng = np.random.default_rng([int(seed), int(epoch), 1])
    order = rng.permutation(len(lengths))
    mega = max(1, int(mega_batch_factor)) * int(batch_size)
    batches = []
    for start in range(0, len(order), mega):
        chunk = order[start:start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def random_batches(n: int, batch_size: int, seed: int, epoch: int = 0) -> list[np.ndarray]:
    """Plain shuffled batches (the baseline length grouping is compared to)."""
    order = np.random.default_rng([int(seed), int(epoch), 2]).permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def padding_fraction(lengths, batches) -> float:
    """Share of padded positions when each batch is padded to its longest cell."""
    lengths = np.asarray(lengths)
    padded = real = 0
    for batch in batches:
        ls = lengths[np.asarray(batch)]
        if len(ls):
            padded += int(ls.max()) * len(ls)
            real += int(ls.sum())
    return 0.0 if padded == 0 else 1.0 - real / padded


def rank_batches(batches: list, rank: int, world_size: int) -> list:
    """This rank's disjoint share; every rank gets the same number of batches."""
    if world_size <= 1:
        return batches
    per_rank = len(batches) // world_size
    return batches[rank::world_size][:per_rank]


class BatchReader(torch.utils.data.Dataset):
    """Item i = the collated tensors of batch i (rows read from the memory-mapped split)."""

    def __init__(self, split, batches, max_length: int, species_token_ids: dict, pad_token_id: int):
        self.split = split
        self.batches = batches
        self.max_length = max_length
        self.species_token_ids = species_token_ids
        self.pad_token_id = pad_token_id

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        indices = [int(x) for x in self.batches[i]]
        columns = self.split[indices]
        keys = list(columns)
        rows = [dict(zip(keys, values)) for values in zip(*(columns[k] for k in keys))]
        return collate_cells(rows, self.max_length, self.species_token_ids, self.pad_token_id)


def batch_loader(reader: BatchReader, num_workers: int, seed: int):
    # An own generator: creating the iterator must not draw from the global RNG (resumability).
    return torch.utils.data.DataLoader(reader, batch_size=None, shuffle=False, num_workers=int(num_workers),
                                       persistent_workers=False, generator=torch.Generator().manual_seed(seed))


def cell_lengths(split, max_length: int) -> np.ndarray:
    """Genes per cell of a corpus split, cut at ``max_length`` (read from the ``length`` column only)."""
    lengths = np.asarray(split.with_format("numpy")["length"], dtype=np.int64)
    return np.minimum(lengths, max_length)


def cell_tokens(cells, rows: np.ndarray, max_length: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(cell, token)``: the first ``max_length`` tokens (None: all stored) of each row, flattened; ``cell``
    indexes ``rows``."""
    import pyarrow.compute as pc

    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    table = cells.select_columns(["input_ids", "length"]).with_format("arrow")[rows.tolist()]
    ids = table.column("input_ids").combine_chunks()
    sizes = pc.list_value_length(ids).to_numpy(zero_copy_only=False).astype(np.int64)
    tokens = ids.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    cell = np.repeat(np.arange(len(rows)), sizes)
    rank = np.arange(len(tokens)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    lengths = table.column("length").to_numpy().astype(np.int64)
    if max_length is not None:
        lengths = np.minimum(lengths, int(max_length))
    keep = rank < lengths[cell]
    return cell[keep], tokens[keep]


def cells_with_tokens(cells, rows: np.ndarray, tokens: np.ndarray, max_length: int) -> np.ndarray:
    """Per row of ``rows``: whether one of ``tokens`` is among its first ``max_length`` genes."""
    cell, found = cell_tokens(cells, rows, max_length)
    return np.bincount(cell[np.isin(found, tokens)], minlength=len(rows)) > 0


def rows_holding(cells, tokens, max_length: int) -> dict[int, np.ndarray]:
    """Token -> the (sorted) rows of ``cells`` whose first ``max_length`` genes hold it, for each of ``tokens``."""
    cell, found = cell_tokens(cells, np.arange(len(cells)), max_length)
    return {int(token): np.unique(cell[found == int(token)]) for token in tokens}


# --------------------------------------------------------------------------- collation and masking


def collate_cells(rows, max_length: int, species_token_ids: dict | None = None,
                  pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad corpus rows (dicts with ``input_ids``, ``values``, ``length``, ``species``) into tensors.

    Cells longer than ``max_length`` are cut (the corpus is ranked, so the
    top genes are kept). Returns ``input_ids`` (long, B × L), ``values``
    (float32, B × L, 0 at padding), ``attention_mask`` (long, 1 = gene) and
    ``species_ids`` (long, the species token id of each cell); L is the
    longest (cut) cell of the batch.
    """
    species_token_ids = species_token_ids or SPECIES_TOKEN_IDS
    rows = list(rows)
    if not rows:
        raise ValueError("collate_cells got no rows")
    lengths = []
    for row in rows:
        n = int(row.get("length", len(row["input_ids"])))
        if n > len(row["input_ids"]) or len(row["values"]) < n:
            raise ValueError(f"row length {n} exceeds its input_ids/values")
        lengths.append(min(n, max_length))
    width = max(1, max(lengths))
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    values = torch.zeros((len(rows), width), dtype=torch.float32)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    species_ids = torch.empty(len(rows), dtype=torch.long)
    for i, (row, n) in enumerate(zip(rows, lengths)):
        input_ids[i, :n] = torch.as_tensor(list(row["input_ids"][:n]), dtype=torch.long)
        values[i, :n] = torch.as_tensor(list(row["values"][:n]), dtype=torch.float32)
        attention_mask[i, :n] = 1
        species = row["species"]
        if species not in species_token_ids:
            raise ValueError(f"unknown species '{species}'; expected one of {list(species_token_ids)}")
        species_ids[i] = species_token_ids[species]
    return {"input_ids": input_ids, "values": values, "attention_mask": attention_mask,
            "species_ids": species_ids}


def mask_batch(input_ids: torch.Tensor, values: torch.Tensor, attention_mask: torch.Tensor | None = None,
               mask_probability: float = 0.15, generator: torch.Generator | None = None,
               mask_token_id: int = 1, pad_token_id: int = 0):
    """Mask ``round(mask_probability × length)`` (at least 1) real genes of every cell.

    Only real gene positions (attention_mask 1, not pad) are eligible; the
    species token is not part of ``input_ids`` and is never masked. A masked
    position gets ``mask_token_id`` and value 0 (its knowledge is then the
    mask token's, i.e. zeros). Deterministic given ``generator``.

    Returns ``(masked_ids, masked_values, id_labels, value_labels,
    value_label_mask)``: ``id_labels`` is the true id at masked positions and
    -100 elsewhere, ``value_labels`` the true values, ``value_label_mask``
    True at masked positions.
    """
    if attention_mask is None:
        attention_mask = input_ids != pad_token_id
    eligible = attention_mask.bool() & (input_ids != pad_token_id)
    n_real = eligible.sum(dim=1)
    n_mask = torch.clamp(torch.round(n_real.to(torch.float64) * mask_probability).long(), min=1)
    n_mask = torch.minimum(n_mask, n_real)
    scores = torch.rand(input_ids.shape, generator=generator, device="cpu").to(input_ids.device)
    scores = scores.masked_fill(~eligible, 2.0)
    order = scores.argsort(dim=1)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(order))
    masked = (ranks < n_mask[:, None]) & eligible
    masked_ids = input_ids.masked_fill(masked, mask_token_id)
    masked_values = values.masked_fill(masked, 0.0)
    id_labels = input_ids.masked_fill(~masked, IGNORE_INDEX)
    return masked_ids, masked_values, id_labels, values.clone(), masked
