"""In-memory entry points for notebooks: an AnnData in, tokens and embeddings out.

The same tokenizer (:class:`genecompass.tokenize.CellTokenizer`, Arrow columns
of ``docs/formats.md`` "Corpus") and the same inference
(:func:`genecompass.embed.embed_dataset`) as the workflow's ``tokenize`` and
``embed_sample`` rules, without files::

    from genecompass import api, released
    from genecompass.model.released import load_released

    model = load_released("GeneCompass_Base")
    dictionary = released.read_token_dictionary("human_mouse_tokens.pickle")
    medians = released.read_medians({"human": "human_gene_median_after_filter.pickle"}, dictionary)
    tokens = api.tokenize_anndata(adata, dict(zip(dictionary.token, dictionary.token_id)), medians,
                                  species="human", scheme="released")
    genes = api.embed_anndata(adata, model, tokens)      # adata.obsm["X_genecompass"]
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from genecompass.embedding_files import EMBEDDING_KEY
from genecompass.errors import InputError
from genecompass.io import integer_count_sources, select_counts
from genecompass.normalize import as_csr
from genecompass.tokenize import DEFAULT_CHUNK_SIZE, DEFAULT_MAX_LENGTH, CellTokenizer, chunk_table


def tokenize_anndata(adata, gene_to_token: Mapping[str, int], medians, species: str, *, scheme: str = "paper",
                     counts: str = "X", max_length: int = DEFAULT_MAX_LENGTH,
                     chunk_size: int = DEFAULT_CHUNK_SIZE, sample: str = "anndata"):
    """Rank-value tokens of the cells of ``adata`` as a ``datasets.Dataset`` (one row per cell with a token).

    ``adata`` holds raw counts where ``counts`` says (``X``, ``raw`` or ``layers/<name>``, as the
    sample sheet's column and ``io.select_counts``) with
    genes named as ``gene_to_token``'s keys (Ensembl IDs); ``medians`` as for
    :class:`CellTokenizer` (our ``medians.tsv`` or ``released.read_medians``);
    ``scheme`` ``paper`` (ours) or ``released`` (the authors' checkpoints).
    Cells without any known gene get no row; ``cell_id`` keys rows to ``obs_names``.
    """
    import pyarrow as pa
    from datasets import Dataset

    from genecompass.tokenize import shard_features

    matrix = as_csr(select_counts(adata, counts).X)
    data = matrix.data
    if len(data) and (data.min() < 0 or not np.array_equal(data, np.round(data))):
        raise InputError(None, counts, "holds negative or non-integer values (normalised data?)",
                         f"pass counts= one of {integer_count_sources(adata) or ['X', 'raw', 'layers/<name>']}")
    tokenizer = CellTokenizer(adata.var_names, gene_to_token, medians, max_length, scheme=scheme)
    if tokenizer.token_map.n_genes_kept == 0:
        raise InputError(None, "var_names", f"none of {adata.n_vars} genes has a token (e.g. "
                         f"{list(adata.var_names[:3])})", "name genes by Ensembl ID, as the token dictionary does")
    cell_ids = np.asarray(adata.obs_names, dtype=object)
    tables = [chunk_table(tokenizer(matrix[start:start + chunk_size]), cell_ids[start:start + chunk_size],
                           species, sample) for start in range(0, matrix.shape[0], chunk_size)]
    table = pa.concat_tables(tables) if tables else shard_features().arrow_schema.empty_table()
    return Dataset(table.cast(shard_features().arrow_schema))


def embed_anndata(adata, model, tokens, *, key: str = EMBEDDING_KEY, batch_size: int = 64,
                  dtype: str = "float32", progress: bool = False) -> pd.DataFrame:
    """Cell embeddings into ``adata.obsm[key]`` (NaN rows for cells without tokens); returns the
    contextual gene embeddings: ``token_id, n_cells`` and the mean output of each gene over its cells.

    ``model``: a GeneCompass encoder, or any of our models holding one (e.g. ``load_released``'s).
    ``tokens``: :func:`tokenize_anndata`'s dataset of the same ``adata``.
    """
    from genecompass.embed import embed_dataset
    from genecompass.embedding_files import vector_columns

    encoder = getattr(model, "genecompass", model)
    result = embed_dataset(encoder, tokens, batch_size=batch_size, dtype=dtype, progress=progress)
    position = pd.Index(result.cell_ids).get_indexer(adata.obs_names.astype(str))
    cells = np.full((adata.n_obs, result.cell_embeddings.shape[1]), np.nan, dtype=np.float32)
    cells[position >= 0] = result.cell_embeddings[position[position >= 0]]
    adata.obsm[key] = cells
    seen = np.flatnonzero(result.gene_counts)
    means = result.gene_sums[seen] / result.gene_counts[seen, None]
    genes = pd.DataFrame({"token_id": seen, "n_cells": result.gene_counts[seen]})
    return pd.concat([genes, pd.DataFrame(means.astype(np.float32), columns=vector_columns(means.shape[1]))],
                     axis=1)
