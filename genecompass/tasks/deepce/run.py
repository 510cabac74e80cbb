"""The DeepCE task's rules, one function each: files in, files out (the logic: :mod:`.profiling`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from genecompass.tasks.deepce import profiling
from genecompass.utils import atomic_output, write_json


def prepare(entry: dict, task: dict, seed: int, data_path, smiles_path, outdir, out_report) -> dict:
    """Rule ``deepce_prepare``: an L1000 plate as signatures per (drug, cell line, dose), whole drugs held out."""
    prepared, report = profiling.prepare(entry, data_path, smiles_path, task, seed)
    profiling.write_prepared(prepared, outdir)
    write_json(report, out_report)
    print(report)
    return report


def predict(method: str, task: dict, species: str, seed: int, prepared_file, out_predictions, out_info,
            contextual=None, static=None, gene_vectors=None) -> dict:
    """Rule ``deepce_predict``: one method's predicted signatures of the held-out drugs. GeneCompass+DeepCE reads
    the gene-embedding tables (``contextual``, ``static``), DeepCE its own gene features (``gene_vectors``)."""
    from genecompass.embedding_files import read_symbol_vectors

    prepared = profiling.read_prepared(Path(prepared_file).parent)
    gene_table = None
    if contextual:
        gene_table = read_symbol_vectors(contextual, static, species)
    elif gene_vectors:
        gene_table = profiling.read_gene_vectors(gene_vectors)
    predictions, info = profiling.run_method(method, prepared, seed, task.get("model", {}), gene_table)
    with atomic_output(out_predictions) as tmp:
        predictions.to_csv(tmp, sep="\t", index=False, float_format="%.5f")
    write_json(info, out_info)
    return info


def evaluate(methods: list[str], signatures_file, prediction_files, precision_k, out_metrics, out_per_profile,
             out_figure) -> pd.DataFrame:
    """Rule ``deepce_evaluate``: per-profile and mean metrics of every method, and the figure."""
    prepared = profiling.read_prepared(Path(signatures_file).parent)
    predictions = {m: pd.read_csv(p, sep="\t", dtype={"drug": str, "cell": str, "dose": str})
                   for m, p in zip(methods, prediction_files)}
    tables = profiling.evaluate(prepared, predictions, tuple(precision_k))
    for name, path in (("metrics", out_metrics), ("per_profile", out_per_profile)):
        with atomic_output(path) as tmp:
            tables[name].to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    profiling.plot_metrics(tables["metrics"], out_figure)
    print(tables["metrics"].to_string())
    return tables["metrics"]
