"""The perturbation task's rules, one function each: files in, files out (the logic: :mod:`.benchmark`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from genecompass.tasks.perturbation import benchmark
from genecompass.tasks.perturbation.data import read_gmt
from genecompass.utils import atomic_output, write_json


def prepare(task: dict, seed: int, data_path, go_path, outdir, out_report) -> dict:
    """Rule ``perturbation_prepare``: checked cells, selected genes, GEARS's simulation split, DE genes."""
    prepared, report = benchmark.prepare(data_path, read_gmt(go_path), task.get("n_top_genes"),
                                         task.get("n_de_genes", 20), seed, task.get("split"))
    print(report)
    benchmark.write_prepared(prepared, outdir)
    write_json(report, out_report)
    return report


def predict(method: str, task: dict, species: str, seed: int, prepared_file, go_path, out_predictions, out_info,
            contextual=None, static=None) -> dict:
    """Rule ``perturbation_predict``: one method's pseudo-bulk predictions for the held-out conditions.
    GeneCompass methods read the gene-embedding tables (``contextual``, ``static``)."""
    from genecompass.embedding_files import read_symbol_vectors

    prepared = benchmark.read_prepared(Path(prepared_file).parent)
    symbols = read_symbol_vectors(contextual, static, species) if contextual else None
    predictions, info = benchmark.run_method(method, prepared, read_gmt(go_path), seed, task.get("gears", {}),
                                             task.get("baseline", {}), symbols)
    with atomic_output(out_predictions) as tmp:
        predictions.to_csv(tmp, sep="\t", index_label="condition")
    write_json(info, out_info)
    return info


def evaluate(methods: list[str], prepared_file, prediction_files, out_metrics, out_per_condition, out_variance,
             out_comparison, out_figure) -> pd.DataFrame:
    """Rule ``perturbation_evaluate``: every metric of every method, per condition and per subgroup; the
    GeneCompass+GEARS vs GEARS comparison; the perturbation variance; the figure."""
    from genecompass.tasks.perturbation.metrics import plot_pearson_delta

    prepared = benchmark.read_prepared(Path(prepared_file).parent)
    predictions = {method: pd.read_csv(path, sep="\t", index_col="condition")
                   for method, path in zip(methods, prediction_files)}
    tables = benchmark.evaluate_methods(prepared, predictions)
    print(tables["metrics"].to_string(index=False))
    print(tables["variance"].to_string(index=False))
    empty = pd.DataFrame(columns=["comparison", "subgroup", "share", "n_conditions"])
    for table, path in ((tables["metrics"], out_metrics), (tables["per_condition"], out_per_condition),
                        (tables["variance"], out_variance), (tables.get("comparison", empty), out_comparison)):
        with atomic_output(path) as tmp:
            table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    plot_pearson_delta(tables["metrics"], out_figure)
    return tables["metrics"]
