"""Rule grn_infer: one method's ranked TF->gene edges on one GRN dataset, scored against every network."""

from pathlib import Path

import pandas as pd
import torch

from genecompass.embed import symbol_vectors
from genecompass.grn.beeline import (
    find_expression_file,
    read_expression,
    read_ranked_edges,
    write_ranked_edges,
)
from genecompass.grn.deepsem import train_deepsem
from genecompass.grn.task import (
    baseline_edges,
    embedding_edges,
    evaluate_networks,
    method_variant,
    prior_edges,
    read_tfs,
    read_truth_network,
)
from genecompass.utils import atomic_output, logged_to

with logged_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    task = snakemake.params.task
    method = snakemake.wildcards.method
    folder = Path(snakemake.input.dataset)
    expression = read_expression(find_expression_file(folder))
    tfs = read_tfs(folder / "TFs.csv")
    networks = {path.name.removesuffix("-network.csv"): read_truth_network(path)
                for path in sorted(folder.glob("*-network.csv"))}
    seed = snakemake.params.seed
    variant = method_variant(method)
    if variant:
        read = {"sep": "\t", "keep_default_na": False}
        vectors = symbol_vectors(pd.read_csv(snakemake.input.contextual, **read),
                                 pd.read_csv(snakemake.input.static, **read),
                             snakemake.params.species)
        covered = expression.index.isin(vectors.index).mean()
        print(f"{variant} embeddings cover {covered:.1%} of the dataset's genes")
    if method == "deepsem":
        result = train_deepsem(expression, task.get("deepsem"), seed=seed, device=task.get("device", "cpu"))
        edges = result.edges(tfs)
        print(pd.DataFrame(result.history).tail(3).to_string(index=False))
    elif method.startswith("cosine_"):
        edges = embedding_edges(vectors, expression, tfs)
    elif method.startswith("deepsem_prior_"):
        edges = prior_edges(read_ranked_edges(snakemake.input.deepsem), vectors, expression.index,
                            float(task.get("prior_threshold", 0.4)))
    else:
        edges = baseline_edges(method, expression, tfs, seed=seed, genie3_trees=int(task.get("genie3_trees", 100)),
                               n_jobs=snakemake.threads)
    table = evaluate_networks(edges, networks, expression.index, tfs)
    table.insert(0, "method", method)
    print(table.to_string(index=False))
    write_ranked_edges(edges, snakemake.output.edges)
    with atomic_output(snakemake.output.metrics) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
