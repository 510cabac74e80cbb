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
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .corpus import BatchReader, cell_lengths
from .devices import autocast_for, resolve_device
from .embedding_files import SampleEmbeddings, vector_columns
from .model import GeneCompassConfig, GeneCompassModel

log = logging.getLogger(__name__)

STATIC_VALUE = 1.0


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


def static_gene_table(model: GeneCompassModel, dictionary: pd.DataFrame) -> pd.DataFrame:
    """Static embeddings of every gene token with its human and mouse IDs and symbols."""
    genes = dictionary[dictionary["token_class"] != "special"]
    vectors = static_gene_embeddings(model, genes["token_id"].to_numpy())
    keys = genes[["token_id", "token", "token_class", "human_ensembl_id", "mouse_ensembl_id", "human_symbol",
                  "mouse_symbol"]].reset_index(drop=True)
    return pd.concat([keys, pd.DataFrame(vectors, columns=vector_columns(vectors.shape[1]))], axis=1)




# --------------------------------------------------------------------------- the rules


def embed_sample(model_dir, shard_path, h5ad_path, settings: dict, max_length: int, species_samples: int,
                 seed: int, out_path) -> SampleEmbeddings:
    """Rule ``embed_sample``: one tokenized sample through the model (``settings``: the config's
    ``embeddings`` section); its cells feed the contextual gene embeddings up to the species' budget
    (``cells.max_cells_per_species``), shared evenly by its ``species_samples`` samples."""
    import anndata as ad
    import datasets

    from .embedding_files import save_sample_embeddings, select_gene_cells

    cells = settings.get("cells") or {}
    shard = datasets.Dataset.from_file(str(shard_path))
    obs = ad.read_h5ad(h5ad_path, backed="r").obs
    max_cells = cells.get("max_cells_per_species")
    if max_cells is not None:
        max_cells = max(1, max_cells // species_samples)
    gene_cells = select_gene_cells(obs, shard["cell_id"], cells.get("obs_column"), cells.get("value"), max_cells,
                                   seed=seed)
    model = load_encoder(model_dir, settings["device"])
    result = embed_dataset(model, shard, batch_size=settings["batch_size"], max_length=max_length,
                           gene_cells=gene_cells, dtype=settings.get("dtype", "float32"))
    species = shard[0]["species"] if len(shard) else "unknown"
    print(f"{len(result.cell_ids)} cells embedded; {int(gene_cells.sum())} feed the gene embeddings")
    save_sample_embeddings(result, out_path, species)
    return result


def gene_tables(model_dir, dictionary_path, sample_files, out_contextual, out_static) -> None:
    """Rule ``gene_embeddings``: the contextual (per species, pooled over the samples) and static
    gene-embedding tables of one model."""
    from .dictionary import read_dictionary
    from .embedding_files import contextual_gene_table, load_sample_embeddings, pool_by_species
    from .utils import atomic_output

    dictionary = read_dictionary(dictionary_path)
    contextual = contextual_gene_table(pool_by_species([load_sample_embeddings(path) for path in sample_files]),
                                       dictionary)
    print(contextual.groupby("species")["token_id"].count().to_string())
    with atomic_output(out_contextual) as tmp:
        contextual.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    static = static_gene_table(load_encoder(model_dir, "cpu"), dictionary)
    with atomic_output(out_static) as tmp:
        static.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


__all__ = ["embed_dataset", "embed_sample", "gene_tables", "load_encoder", "mean_pairwise_cosine",
           "static_gene_embeddings", "static_gene_table"]
