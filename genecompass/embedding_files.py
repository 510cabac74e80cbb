"""Embeddings as files: a sample's inference output, cell embeddings in ``obsm``, gene-embedding tables.

Reading and writing what :mod:`genecompass.embed` computes (``docs/formats.md``, "Embeddings"), without
the model: tasks that only read gene vectors (GRN cosines, perturbation and drug features, the
homology analysis) import this module and never load torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

EMBEDDING_KEY = "X_genecompass"   # obsm key of the cell embeddings


@dataclass
class SampleEmbeddings:
    """Inference output of one tokenized sample (rows in the sample's cell order)."""

    cell_ids: list[str]
    cell_embeddings: np.ndarray      # (cells, hidden) float32
    within_cell_cosine: np.ndarray   # (cells,) mean cosine between different genes of a cell
    gene_sums: np.ndarray            # (vocab, hidden) float64: sum of gene outputs over selected cells
    gene_counts: np.ndarray          # (vocab,) int64: selected cells expressing each token


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


def attach_cell_embeddings(adata, result: SampleEmbeddings, source=None, key: str = EMBEDDING_KEY) -> None:
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


def vector_columns(hidden: int) -> list[str]:
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
                                                     columns=vector_columns(sums.shape[1]))], axis=1))
    return pd.concat(frames, ignore_index=True)


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
