"""The GRN task's rules, one function each: files in, files out (the logic: :mod:`.benchmark`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from genecompass.tasks.grn import benchmark
from genecompass.tasks.grn.beeline import read_ranked_edges, write_ranked_edges
from genecompass.tasks.grn.methods import method_variant
from genecompass.utils import atomic_output


def export_dataset(entry: dict, h5ad_files, expression_file, tfs_file, out_folder) -> None:
    """Rule ``grn_dataset``: a ``tasks.grn.datasets`` entry as a BEELINE folder (expression, TFs, networks).

    Expression: the QC'd samples (log1p CP10k of the expressed TFs and the most variable genes) or a
    BEELINE ``ExpressionData.csv``; TFs: the entry's list, else the networks' regulators."""
    import anndata as ad

    from genecompass.tasks.grn.beeline import read_expression, write_beeline_dataset

    networks = {name: benchmark.read_truth_network(path) for name, path in entry["networks"].items()}
    if entry.get("tfs"):
        tfs = benchmark.read_tfs(tfs_file, entry.get("tf_column", "TF"))
    else:
        tfs = list(dict.fromkeys(tf for network in networks.values() for tf in network["Gene1"]))
    if entry.get("samples"):
        adata = ad.concat([ad.read_h5ad(path) for path in h5ad_files], join="inner", merge="first",
                          index_unique="/", keys=entry["samples"])
        expression = benchmark.export_expression(adata, tfs, entry.get("n_variable_genes", 500),
                                                 entry.get("min_cell_fraction", 0.1))
    else:
        expression = read_expression(expression_file)
        expression.index = expression.index.str.upper()
    genes = set(expression.index)
    present = [tf for tf in tfs if tf in genes]
    print(f"{entry['name']}: {expression.shape[0]} genes x {expression.shape[1]} cells, {len(present)} TFs")
    for name, network in networks.items():
        inside = network["Gene1"].isin(present) & network["Gene2"].isin(genes)
        print(f"network {name}: {len(network)} edges, {int(inside.sum())} between a listed TF and a dataset gene")
    write_beeline_dataset(out_folder, expression, networks, tfs=present)


def infer(method: str, dataset_folder, task: dict, species: str, seed: int, threads: int, out_edges, out_metrics,
          contextual=None, static=None, deepsem_edges=None) -> pd.DataFrame:
    """Rule ``grn_infer``: one method's ranked TF→gene edges on one dataset, scored against every network.

    Embedding methods read the variant's gene tables (``contextual``, ``static``); ``deepsem_prior_*`` reads
    DeepSEM's edges of the same dataset."""
    from genecompass.embedding_files import read_symbol_vectors

    expression, tfs, networks = benchmark.read_grn_dataset(dataset_folder)
    vectors = None
    if method_variant(method):
        vectors = read_symbol_vectors(contextual, static, species)
        print(f"{method_variant(method)} embeddings cover {expression.index.isin(vectors.index).mean():.1%} "
              "of the dataset's genes")
    deepsem = read_ranked_edges(deepsem_edges) if method.startswith("deepsem_prior_") else None
    edges = benchmark.method_edges(method, expression, tfs, seed=seed, settings=task, vectors=vectors,
                                   deepsem=deepsem, n_jobs=threads)
    table = benchmark.evaluate_networks(edges, networks, expression.index, tfs)
    table.insert(0, "method", method)
    print(table.to_string(index=False))
    write_ranked_edges(edges, out_edges)
    with atomic_output(out_metrics) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    return table


def sweep_prior(dataset: str, variant: str, dataset_folder, task: dict, species: str, contextual, static,
                deepsem_edges, out_table, out_figure) -> pd.DataFrame:
    """Rule ``grn_prior_sweep``: DeepSEM filtered by the variant's embedding prior at every threshold."""
    from genecompass.embedding_files import read_symbol_vectors

    expression, tfs, networks = benchmark.read_grn_dataset(dataset_folder)
    vectors = read_symbol_vectors(contextual, static, species)
    step = float(task.get("sweep_step", 0.05))
    thresholds = np.round(np.arange(0.0, 1.0 + step / 2, step), 6)
    sweep = benchmark.prior_sweep(read_ranked_edges(deepsem_edges), vectors, networks, expression.index, tfs,
                                  thresholds)
    sweep.insert(0, "variant", variant)
    print(sweep.to_string(index=False))
    with atomic_output(out_table) as tmp:
        sweep.to_csv(tmp, sep="\t", index=False)
    benchmark.plot_prior_sweep(sweep, out_figure, chosen=float(task.get("prior_threshold", 0.4)),
                               title=f"{dataset}: DeepSEM + {variant} embedding prior")
    return sweep


def summarise(dataset: str, metrics_files, methods, out_table, out_figure) -> pd.DataFrame:
    """Rule ``grn_summary``: every method's metrics on one dataset in one table and one figure."""
    table = pd.concat([pd.read_csv(path, sep="\t") for path in metrics_files], ignore_index=True)
    wide = table.pivot(index="method", columns="network", values=["auprc_ratio", "epr"]).round(3)
    print(wide.loc[methods].to_string())
    with atomic_output(out_table) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    benchmark.plot_method_table(table, out_figure, title=f"GRN inference: {dataset}")
    return table


def universal_grn(variant: str, model_dir, dictionary_path, dataset_folders, species: dict[str, str], task: dict,
                  seed: int, out_table) -> pd.DataFrame:
    """Rule ``grn_ugrn``: universal GRN pair features of the frozen model (embedding, VVP, GDT), a translator
    trained on each dataset's network and scored on every other dataset's."""
    from genecompass.dictionary import read_dictionary
    from genecompass.tasks.grn.ugrn import load_pretraining_model

    settings = task.get("ugrn", {})
    dictionary = read_dictionary(dictionary_path)
    model = load_pretraining_model(model_dir, settings.get("device", "cpu"))
    datasets = {}
    for folder in map(Path, dataset_folders):
        name = folder.parent.name
        expression, tfs, networks = benchmark.read_grn_dataset(folder)
        # the dataset's training / evaluation GRN: ugrn.network[name], else its first network
        network_name = (settings.get("network") or {}).get(name, next(iter(networks)))
        tokens = benchmark.symbol_tokens(dictionary, species[name])
        pairs = benchmark.ugrn_pairs(expression, networks[network_name], tfs, tokens,
                                     settings.get("max_positive_pairs"), seed)
        genes = [tokens[g] for g in expression.index if g in tokens]
        print(f"{name} ({species[name]}, {network_name}): {len(genes)} genes with tokens, "
              f"{int(pairs['label'].sum())} positive and {int((pairs['label'] == 0).sum())} negative pairs")
        datasets[name] = {"pairs": pairs, "genes": genes, "species": species[name]}
    table = benchmark.ugrn_table(model, datasets, kind=settings.get("translator", "logistic"), seed=seed,
                                 window=settings.get("window"))
    table.insert(0, "variant", variant)
    print(table.round(3).to_string(index=False))
    with atomic_output(out_table) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    return table


def delete_tfs(variant: str, dataset_folder, model_dir, dictionary_path, shards, species: str, task: dict, seed: int,
               out_table) -> pd.DataFrame:
    """Rule ``grn_deletion``: each TF deleted in silico; precision@k of the genes whose contextual embeddings
    move most against its targets in the dataset's first network, next to random picks."""
    from genecompass.corpus import load_tokenized
    from genecompass.dictionary import read_dictionary
    from genecompass.embed import load_encoder

    settings = task.get("deletion", {})
    _, tfs, networks = benchmark.read_grn_dataset(dataset_folder)
    network = next(iter(networks.values()))
    encoder = load_encoder(model_dir, settings.get("device", "cpu"))
    table = benchmark.deletion_table(encoder, load_tokenized(list(shards)), tfs, network,
                                     benchmark.symbol_tokens(read_dictionary(dictionary_path), species),
                                     max_length=encoder.config.max_genes,
                                     k_values=tuple(settings.get("k", (10, 20, 50))),
                                     min_targets=settings.get("min_targets", 5),
                                     max_cells=settings.get("max_cells", 200), seed=seed)
    table.insert(0, "variant", variant)
    summary = table.groupby("k")[["precision", "random_precision", "expected_random"]].mean()
    print(f"{table['tf'].nunique()} TFs; mean over TFs:\n{summary.round(4).to_string()}")
    with atomic_output(out_table) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    return table
