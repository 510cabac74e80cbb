"""Cross-species annotation as a workflow task: QC'd samples + GeneCompass gene embeddings -> CAME.

The reference (labelled) and query samples are joined per side, normalised
(counts per 10,000, log1p) and given to :mod:`genecompass.tasks.came.model`:
CAME's gene selection (HVGs ∪ DEGs), the query's pre-clustering, the graph,
and one training run per seed. Homology comes from the token dictionary
(homologous tokens pair a human and a mouse Ensembl ID). "GeneCompass+CAME"
initialises gene nodes with GeneCompass contextual gene embeddings (the
gene's mean output in its own species' cells), falling back to the static
embedding for genes no cell expressed; "CAME" uses CAME's own initialisation.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from genecompass.errors import InputError
from genecompass.tasks.came.methods import METHODS

log = logging.getLogger(__name__)



def homology_from_dictionary(dictionary: pd.DataFrame, reference_species: str, query_species: str) -> pd.DataFrame:
    """(reference gene, query gene) Ensembl ID pairs of the dictionary's homologous tokens."""
    if reference_species == query_species:
        raise ValueError(f"reference and query are both {reference_species}; CAME pairs two species")
    homologous = dictionary[dictionary["token_class"] == "homologous"]
    return pd.DataFrame({"reference_gene": homologous[f"{reference_species}_ensembl_id"].to_numpy(),
                         "query_gene": homologous[f"{query_species}_ensembl_id"].to_numpy()})


def gene_vectors(contextual: pd.DataFrame, static: pd.DataFrame, standardise: bool = True) -> pd.DataFrame:
    """Gene vectors indexed by Ensembl ID (both species): contextual, else static.

    ``standardise`` z-scores each dimension over the genes: transformer outputs
    share a large common component (all raw cosines near one), which as a
    node feature would add the same offset to every gene.
    """
    dims = [c for c in contextual.columns if c.startswith("dim_")]
    vectors = contextual.set_index("ensembl_id")[dims]
    fallback = []
    for species in ("human", "mouse"):
        ids = static[f"{species}_ensembl_id"]
        rows = static.loc[ids != "", dims].set_index(ids[ids != ""])
        fallback.append(rows)
    fallback = pd.concat(fallback)
    fallback = fallback[~fallback.index.isin(vectors.index) & ~fallback.index.duplicated()]
    table = pd.concat([vectors[~vectors.index.duplicated()], fallback]).astype(np.float64)
    if standardise:
        table = (table - table.mean(axis=0)) / table.std(axis=0).replace(0.0, 1.0)
    return table


def join_samples(adatas: dict, label_column: str | None, role: str):
    """Concatenate QC'd samples of one side and log-normalise them (counts per 10,000, log1p)."""
    import anndata as ad
    import scanpy as sc

    for name, adata in adatas.items():
        if label_column and label_column not in adata.obs:
            raise InputError(name, f"obs['{label_column}']", f"the {role} sample has no such column "
                             f"(it has {list(adata.obs.columns)})",
                             "set tasks.came.pairs.<pair>.label_column to the column holding cell types")
    joined = ad.concat(adatas, join="outer", label="sample", index_unique="::", fill_value=0)
    joined.X = joined.X.astype(np.float32)
    sc.pp.normalize_total(joined, target_sum=1e4)
    sc.pp.log1p(joined)
    return joined


def run_came_task(reference, query, homology: pd.DataFrame, label_column: str, method: str, seeds,
                  settings: dict | None = None, embeddings: pd.DataFrame | None = None, n_top_genes: int = 2000,
                  n_degs: int = 50, device: str = "cpu"):
    """Run CAME (``method`` "came" or "genecompass_came") for each seed; returns the seed runs.

    ``reference``/``query``: log-normalised AnnData; the query's labels, when
    present, are used only for reporting.
    """
    from genecompass.tasks.came.model import (
        CameConfig,
        build_came_graph,
        cluster_query,
        run_came_seeds,
        select_genes,
    )

    if method not in METHODS:
        raise ValueError(f"unknown CAME method '{method}'; use one of {METHODS}")
    if method == "genecompass_came" and embeddings is None:
        raise ValueError("genecompass_came needs GeneCompass gene embeddings")
    config = CameConfig(**(settings or {}))
    labels = reference.obs[label_column].astype(str).to_numpy()
    clusters = cluster_query(query, method=config.cluster_method, resolution=config.cluster_resolution,
                             n_neighbors=config.cluster_neighbors, seed=config.cluster_seed, n_top_genes=n_top_genes)
    selection = select_genes(reference, query, homology, labels, clusters, n_top_genes=n_top_genes, n_degs=n_degs)
    graph = build_came_graph(reference, query, homology, labels, node_genes=selection.node_genes,
                             feature_pairs=selection.feature_pairs,
                             gene_embeddings=embeddings if method == "genecompass_came" else None,
                             missing_embedding="mean")
    truth = query.obs[label_column].astype(str).to_numpy() if label_column in query.obs else None
    runs = run_came_seeds(graph, list(seeds), query_clusters=clusters, config=config, query_labels=truth,
                          device=device)
    return runs, truth


def consensus_predictions(runs, query_cells) -> pd.DataFrame:
    """Per query cell: each seed's prediction, the mean-probability label and its probability."""
    frame = pd.DataFrame(index=pd.Index([str(c) for c in query_cells], name="cell"))
    probabilities = None
    for result in runs.results:
        frame[f"seed_{result.seed}"] = result.predictions
        p = result.probability_frame()
        probabilities = p if probabilities is None else probabilities + p
    probabilities = probabilities / len(runs.results)
    frame["predicted"] = probabilities.idxmax(axis=1).to_numpy()
    frame["probability"] = probabilities.max(axis=1).to_numpy()
    return frame


def came(pair: dict, task: dict, method: str, reference_files: list[str], query_files: list[str], dictionary_path,
         reference_species: str, query_species: str, out_metrics, out_predictions, out_figure,
         contextual=None, static=None) -> dict:
    """Rule ``came``: annotate the query samples of ``pair`` (a ``tasks.came.pairs`` entry) from its reference
    samples with ``method`` over the task's seeds; write the summary (JSON), the per-cell predictions with the
    consensus over seeds, and the consensus confusion figure. ``contextual``/``static``: the gene-embedding
    tables GeneCompass+CAME starts from."""
    import anndata as ad

    from genecompass.dictionary import read_dictionary
    from genecompass.tasks.annotation.metrics import annotation_metrics, plot_confusion
    from genecompass.tasks.came.labels import match_labels
    from genecompass.tasks.came.methods import method_uses_genecompass
    from genecompass.utils import atomic_output, write_json

    label_column = pair["label_column"]
    reference = join_samples({s: ad.read_h5ad(p) for s, p in zip(pair["reference"], reference_files)},
                             label_column, "reference")
    query = join_samples({s: ad.read_h5ad(p) for s, p in zip(pair["query"], query_files)}, None, "query")
    label_report = None
    if label_column in query.obs:   # score against the reference's spelling of each type
        renamed, label_report = match_labels(reference.obs[label_column], query.obs[label_column],
                                             pair.get("label_map"))
        query.obs[label_column] = renamed
    homology = homology_from_dictionary(read_dictionary(dictionary_path), reference_species, query_species)
    embeddings = None
    if method_uses_genecompass(method):
        read = {"sep": "\t", "keep_default_na": False}
        embeddings = gene_vectors(pd.read_csv(contextual, **read), pd.read_csv(static, **read))
    runs, truth = run_came_task(reference, query, homology, label_column, method, task["seeds"],
                                settings=task.get("settings"), embeddings=embeddings,
                                n_top_genes=task.get("n_top_genes", 2000), n_degs=task.get("n_degs", 50),
                                device=task.get("device", "cpu"))
    print(runs.per_seed.to_string(index=False))
    predictions = consensus_predictions(runs, query.obs_names)
    summary = {"pair": pair["name"], "method": method, "seeds": list(task["seeds"]),
               "per_seed": runs.per_seed.to_dict(orient="records"), "mean": runs.mean, "sd": runs.sd,
               "n_reference_cells": reference.n_obs, "n_query_cells": query.n_obs}
    if label_report is not None:
        summary["labels"] = label_report
    if truth is not None:
        predictions["true"] = truth
        consensus = annotation_metrics(truth, predictions["predicted"], labels=runs.results[0].classes)
        summary["consensus"] = consensus
        plot_confusion(consensus["confusion_matrix"], consensus["labels"], out_figure,
                       title=f"{method}: {pair['name']} (mean probability over seeds)")
    else:
        plot_confusion([[0]], ["no query labels"], out_figure, title="query has no labels")
    with atomic_output(out_predictions) as tmp:
        predictions.to_csv(tmp, sep="\t")
    write_json(summary, out_metrics)
    return summary


__all__ = ["came", "consensus_predictions", "gene_vectors", "homology_from_dictionary", "join_samples",
           "run_came_task"]
