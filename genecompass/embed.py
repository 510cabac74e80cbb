"""Cell and gene embeddings from a (pre)trained GeneCompass (paper, "Cell and gene embedding").

- **Cell embedding**: the last layer's output at the species token (position 0).
- **Contextual gene embedding**: the last layer's output at a gene's position,
  averaged over the cells that express the gene, grouped by gene token (not by
  position: a gene sits at different ranks in different cells). Kept per
  species, so a homologous gene (one token) has a human and a mouse vector.
- **Static gene embedding**: the input encoding of the gene alone (ID ⊕ value ⊕
  knowledge, fused and layer-normalised), at value 1.0 — the gene at its corpus
  median, since corpus values are divided by the gene's median — and without
  the rank position, which belongs to the position and not to the gene.

:func:`embed_dataset` runs batched, length-sorted inference over a tokenized
sample (``docs/formats.md``, "Shards") and returns the cell embeddings, the
per-gene sums and counts for the contextual means (so several samples can be
pooled exactly) and, per cell, the mean cosine similarity between its different
genes' outputs (paper Fig. 2a, right).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .devices import autocast_for, resolve_device
from .model import GeneCompassConfig, GeneCompassModel
from .pretrain import BatchReader, cell_lengths

log = logging.getLogger(__name__)

STATIC_VALUE = 1.0


@dataclass
class SampleEmbeddings:
    """Inference output of one tokenized sample (rows in the sample's cell order)."""

    cell_ids: list[str]
    cell_embeddings: np.ndarray      # (cells, hidden) float32
    within_cell_cosine: np.ndarray   # (cells,) mean cosine between different genes of a cell
    gene_sums: np.ndarray            # (vocab, hidden) float64: sum of gene outputs over selected cells
    gene_counts: np.ndarray          # (vocab,) int64: selected cells expressing each token


def load_encoder(model_dir, device: str = "auto") -> GeneCompassModel:
    """The encoder of a checkpoint written by any GeneCompass class, in eval mode."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no config.json; expected a save_pretrained folder "
                                f"(e.g. results/model/<variant>/model)")
    model = GeneCompassModel.from_pretrained(model_dir)
    return model.to(resolve_device(device)).eval()


def mean_pairwise_cosine(vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per row of ``vectors`` (B × L × D), the mean cosine over pairs of distinct masked positions.

    Uses ``mean_{i≠j} u_i·u_j = (|Σ u_i|² − n) / (n (n − 1))`` for unit vectors
    ``u``; rows with fewer than two positions give NaN.
    """
    unit = torch.nn.functional.normalize(vectors.float(), dim=-1) * mask.unsqueeze(-1)
    n = mask.sum(dim=1).double()
    total = unit.sum(dim=1).double()
    value = ((total * total).sum(dim=-1) - n) / (n * (n - 1))
    return torch.where(n > 1, value, torch.full_like(value, float("nan"))).float()


@torch.no_grad()
def embed_dataset(model: GeneCompassModel, dataset, batch_size: int = 64, max_length: int | None = None,
                  gene_cells: np.ndarray | None = None, dtype: str = "float32",
                  progress: bool = True) -> SampleEmbeddings:
    """Embed every cell of a tokenized dataset (``input_ids``, ``values``, ``length``, ``species``, ``cell_id``).

    ``gene_cells`` (bool per cell) selects the cells whose gene outputs enter
    the contextual sums (default: all). Cells are processed longest first in
    batches of ``batch_size``; the results are returned in dataset order.
    """
    from tqdm.auto import tqdm

    cfg: GeneCompassConfig = model.config
    device = next(model.parameters()).device
    max_length = int(max_length or cfg.max_genes)
    n = len(dataset)
    hidden = cfg.hidden_size
    lengths = cell_lengths(dataset, max_length)
    selected = np.ones(n, dtype=bool) if gene_cells is None else np.asarray(gene_cells, dtype=bool)
    if selected.shape != (n,):
        raise ValueError(f"gene_cells has {selected.shape[0]} entries for {n} cells")
    autocast, _ = autocast_for(device, dtype)

    cells = np.zeros((n, hidden), dtype=np.float32)
    within = np.full(n, np.nan, dtype=np.float32)
    sums = torch.zeros((cfg.vocab_size, hidden), dtype=torch.float64, device=device)
    counts = torch.zeros(cfg.vocab_size, dtype=torch.int64, device=device)
    order = np.argsort(-lengths, kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    reader = BatchReader(dataset.select_columns(["input_ids", "values", "length", "species"]), batches, max_length,
                         cfg.species_token_ids, cfg.pad_token_id)
    for i in tqdm(range(len(reader)), desc="embedding cells", unit="batch", disable=not progress, mininterval=5):
        batch_index = batches[i]
        batch = reader[i]
        ids = batch["input_ids"].to(device)
        mask = batch["attention_mask"].to(device).bool()
        with autocast():
            out = model(input_ids=ids, values=batch["values"].to(device),
                        species_ids=batch["species_ids"].to(device), attention_mask=mask).last_hidden_state
        out = out.float()
        genes = out[:, 1:]
        cells[batch_index] = out[:, 0].cpu().numpy()
        within[batch_index] = mean_pairwise_cosine(genes, mask).cpu().numpy()
        chosen = mask & torch.as_tensor(selected[batch_index], device=device)[:, None]
        sums.index_add_(0, ids[chosen], genes[chosen].double())
        counts.index_add_(0, ids[chosen], torch.ones_like(ids[chosen]))
    cell_ids = [str(c) for c in dataset["cell_id"]] if "cell_id" in dataset.column_names else \
        [str(i) for i in range(n)]
    return SampleEmbeddings(cell_ids, cells, within, sums.cpu().numpy(), counts.cpu().numpy())


@torch.no_grad()
def static_gene_embeddings(model: GeneCompassModel, token_ids=None, value: float = STATIC_VALUE) -> np.ndarray:
    """Input encoding of each token alone (no rank position), layer-normalised; (tokens × hidden)."""
    embeddings = model.embeddings
    was_training = embeddings.training
    embeddings.eval()
    device = next(model.parameters()).device
    ids = torch.arange(model.config.vocab_size) if token_ids is None else torch.as_tensor(token_ids).long()
    ids = ids.to(device)
    encoded = embeddings.gene_encoding(ids, torch.full(ids.shape, float(value), device=device))
    result = embeddings.LayerNorm(encoded).float().cpu().numpy()
    embeddings.train(was_training)
    return result


def select_gene_cells(obs: pd.DataFrame, cell_ids, obs_column: str | None = None, value: str | None = None,
                      max_cells: int | None = None, seed: int = 0) -> np.ndarray:
    """Which cells feed the contextual gene embeddings (bool, in ``cell_ids`` order).

    Cells whose ``obs[obs_column]`` equals ``value`` (all cells when no column
    is given), then at most ``max_cells`` of them drawn at random (seeded).
    """
    cell_ids = pd.Index([str(c) for c in cell_ids])
    chosen = np.ones(len(cell_ids), dtype=bool)
    if obs_column:
        if obs_column not in obs.columns:
            raise ValueError(f"embeddings.cells.obs_column '{obs_column}' is not an obs column of the sample "
                             f"(it has {list(obs.columns)}); set it to one of those or to null")
        labels = obs[obs_column].astype(str).reindex(cell_ids)
        chosen &= (labels == str(value)).to_numpy()
    if max_cells is not None and chosen.sum() > max_cells:
        keep = np.random.default_rng(seed).choice(np.flatnonzero(chosen), size=int(max_cells), replace=False)
        chosen[:] = False
        chosen[keep] = True
    return chosen


def attach_cell_embeddings(adata, result: SampleEmbeddings, source=None, key: str = "X_genecompass") -> None:
    """Put a sample's cell embeddings into ``adata.obsm[key]`` (matched by cell ID) and the
    within-cell gene cosine into ``obs``; every cell of ``adata`` must have an embedding."""
    position = {cell: i for i, cell in enumerate(result.cell_ids)}
    rows = np.array([position.get(str(cell), -1) for cell in adata.obs_names])
    if (rows < 0).any():
        missing = adata.obs_names[rows < 0][:5].tolist()
        raise ValueError(f"{source}: no embedding for {(rows < 0).sum()} of {adata.n_obs} cells (e.g. {missing}); "
                         f"re-run the tokenize and embed_sample rules for this sample")
    adata.obsm[key] = result.cell_embeddings[rows]
    adata.obs["genecompass_within_cell_cosine"] = result.within_cell_cosine[rows]


def save_sample_embeddings(result: SampleEmbeddings, path, species: str) -> None:
    """One ``.npz``: cell IDs and embeddings, within-cell cosines, and the gene sums of seen tokens only."""
    from .utils import atomic_output

    seen = np.flatnonzero(result.gene_counts > 0)
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, cell_ids=np.asarray(result.cell_ids, dtype=str), cell_embeddings=result.cell_embeddings,
                 within_cell_cosine=result.within_cell_cosine, gene_tokens=seen, gene_sums=result.gene_sums[seen],
                 gene_counts=result.gene_counts[seen], vocab_size=len(result.gene_counts),
                 species=np.asarray(species))


def load_sample_embeddings(path) -> tuple[SampleEmbeddings, str]:
    with np.load(path, allow_pickle=False) as data:
        vocab, hidden = int(data["vocab_size"]), data["cell_embeddings"].shape[1]
        sums = np.zeros((vocab, hidden), dtype=np.float64)
        counts = np.zeros(vocab, dtype=np.int64)
        sums[data["gene_tokens"]] = data["gene_sums"]
        counts[data["gene_tokens"]] = data["gene_counts"]
        result = SampleEmbeddings([str(c) for c in data["cell_ids"]], data["cell_embeddings"],
                                  data["within_cell_cosine"], sums, counts)
        return result, str(data["species"])


def pool_by_species(samples: list[tuple[SampleEmbeddings, str]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Sum the gene sums and counts of the samples of each species."""
    pooled: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for result, species in samples:
        if species in pooled:
            sums, counts = pooled[species]
            pooled[species] = (sums + result.gene_sums, counts + result.gene_counts)
        else:
            pooled[species] = (result.gene_sums.copy(), result.gene_counts.copy())
    return pooled


def _vector_columns(hidden: int) -> list[str]:
    return [f"dim_{i}" for i in range(hidden)]


def contextual_gene_table(sums_by_species: dict[str, tuple[np.ndarray, np.ndarray]],
                          dictionary: pd.DataFrame) -> pd.DataFrame:
    """Per species, the mean output of each token seen in its cells.

    Columns: ``species, token_id, token, token_class, ensembl_id, symbol,
    n_cells, dim_0 … dim_{D-1}``; the Ensembl ID and symbol are the species'
    own (a homologous token has the human ID as token and the mouse ID in mouse
    rows).
    """
    frames = []
    by_id = dictionary.set_index("token_id")
    for species, (sums, counts) in sorted(sums_by_species.items()):
        seen = np.flatnonzero(counts > 0)
        info = by_id.loc[seen]
        means = sums[seen] / counts[seen, None]
        frame = pd.DataFrame({
            "species": species, "token_id": seen, "token": info["token"].to_numpy(),
            "token_class": info["token_class"].to_numpy(),
            "ensembl_id": info[f"{species}_ensembl_id"].to_numpy(),
            "symbol": info[f"{species}_symbol"].to_numpy(), "n_cells": counts[seen]})
        frames.append(pd.concat([frame, pd.DataFrame(means.astype(np.float32),
                                                     columns=_vector_columns(sums.shape[1]))], axis=1))
    return pd.concat(frames, ignore_index=True)


def static_gene_table(model: GeneCompassModel, dictionary: pd.DataFrame) -> pd.DataFrame:
    """Static embeddings of every gene token with its human and mouse IDs and symbols."""
    genes = dictionary[dictionary["token_class"] != "special"]
    vectors = static_gene_embeddings(model, genes["token_id"].to_numpy())
    keys = genes[["token_id", "token", "token_class", "human_ensembl_id", "mouse_ensembl_id", "human_symbol",
                  "mouse_symbol"]].reset_index(drop=True)
    return pd.concat([keys, pd.DataFrame(vectors, columns=_vector_columns(vectors.shape[1]))], axis=1)


def read_gene_table(path) -> tuple[pd.DataFrame, np.ndarray]:
    """A gene-embedding table: (its key columns, the vectors as float32)."""
    table = pd.read_csv(path, sep="\t", dtype={"ensembl_id": str, "symbol": str}, keep_default_na=False)
    vector_columns = [c for c in table.columns if c.startswith("dim_")]
    if not vector_columns:
        raise ValueError(f"{path}: no dim_* columns; expected a gene-embedding table (docs/formats.md)")
    return table.drop(columns=vector_columns), table[vector_columns].to_numpy(np.float32)



def symbol_vectors(contextual: pd.DataFrame, static: pd.DataFrame, species: str) -> pd.DataFrame:
    """One species' gene vectors indexed by upper-cased symbol: contextual, else static.

    Upper-case keys match BEELINE's gene names (mouse symbols upper-cased).
    Genes outside the cells that gave the contextual table fall back to their
    static encoding, so every token with a symbol has a vector; a symbol shared
    by several genes keeps the first.
    """
    dims = [c for c in contextual.columns if c.startswith("dim_")]
    rows = contextual[contextual["species"] == species]
    vectors = rows.set_index(rows["symbol"].astype(str).str.upper())[dims]
    symbols = static[f"{species}_symbol"].astype(str)
    fallback = static.loc[symbols != "", dims].set_index(symbols[symbols != ""].str.upper())
    table = pd.concat([vectors, fallback[~fallback.index.isin(vectors.index)]])
    table = table[~table.index.duplicated() & (table.index != "")].astype(np.float64)
    table.index.name = "symbol"
    return table


def genecompass_vectors(genes: list[str], symbol_table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """GeneCompass vectors of ``genes`` (upper-case symbol lookup); zeros and a flag where missing."""
    index = symbol_table.index
    missing = ~pd.Index([g.upper() for g in genes]).isin(index)
    vectors = np.zeros((len(genes), symbol_table.shape[1]), np.float32)
    found = np.flatnonzero(~missing)
    vectors[found] = symbol_table.loc[[genes[i].upper() for i in found]].to_numpy(np.float32)
    return vectors, np.asarray(missing)


def read_symbol_vectors(contextual_path, static_path, species: str) -> pd.DataFrame:
    """:func:`symbol_vectors` of the gene-embedding tables on disk (embed_genes' outputs)."""
    read = {"sep": "\t", "keep_default_na": False}
    return symbol_vectors(pd.read_csv(contextual_path, **read), pd.read_csv(static_path, **read), species)


__all__ = [
    "SampleEmbeddings", "attach_cell_embeddings", "contextual_gene_table", "embed_dataset", "load_encoder", "load_sample_embeddings",
    "mean_pairwise_cosine", "pool_by_species", "read_gene_table", "save_sample_embeddings", "select_gene_cells",
    "genecompass_vectors", "read_symbol_vectors", "static_gene_embeddings", "static_gene_table", "symbol_vectors",
]
