"""Rule came: cross-species annotation of one reference/query pair with CAME or GeneCompass+CAME."""

import anndata as ad
import pandas as pd

from genecompass.annotation.came_task import (
    consensus_predictions,
    gene_vectors,
    homology_from_dictionary,
    join_samples,
    run_came_task,
)
from genecompass.annotation.metrics import annotation_metrics, plot_confusion
from genecompass.dictionary import read_dictionary
from genecompass.utils import atomic_output, logged_to, write_json

with logged_to(snakemake.log[0]):
    pair = snakemake.params.pair
    task = snakemake.params.task
    method = snakemake.wildcards.method
    label_column = pair["label_column"]
    reference = join_samples({s: ad.read_h5ad(p) for s, p in zip(pair["reference"], snakemake.input.reference)},
                             label_column, "reference")
    query = join_samples({s: ad.read_h5ad(p) for s, p in zip(pair["query"], snakemake.input.query)},
                         None, "query")
    homology = homology_from_dictionary(read_dictionary(snakemake.input.dictionary),
                                        snakemake.params.reference_species, snakemake.params.query_species)
    embeddings = None
    if method == "genecompass_came":
        read = {"sep": "\t", "keep_default_na": False}
        embeddings = gene_vectors(pd.read_csv(snakemake.input.contextual, **read),
                                  pd.read_csv(snakemake.input.static, **read))
    runs, truth = run_came_task(reference, query, homology, label_column, method, task["seeds"],
                                settings=task.get("settings"), embeddings=embeddings,
                                n_top_genes=task.get("n_top_genes", 2000), n_degs=task.get("n_degs", 50),
                                device=task.get("device", "cpu"))
    print(runs.per_seed.to_string(index=False))
    predictions = consensus_predictions(runs, query.obs_names)
    summary = {"pair": snakemake.wildcards.pair, "method": method, "seeds": list(task["seeds"]),
               "per_seed": runs.per_seed.to_dict(orient="records"), "mean": runs.mean, "sd": runs.sd,
               "n_reference_cells": reference.n_obs, "n_query_cells": query.n_obs}
    if truth is not None:
        predictions["true"] = truth
        consensus = annotation_metrics(truth, predictions["predicted"], labels=runs.results[0].classes)
        summary["consensus"] = consensus
        plot_confusion(consensus["confusion_matrix"], consensus["labels"], snakemake.output.figure,
                       title=f"{method}: {snakemake.wildcards.pair} (mean probability over seeds)")
    else:
        plot_confusion([[0]], ["no query labels"], snakemake.output.figure, title="query has no labels")
    with atomic_output(snakemake.output.predictions) as tmp:
        predictions.to_csv(tmp, sep="\t")
    write_json(summary, snakemake.output.metrics)
