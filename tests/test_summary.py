"""Tests of the tidy summary table and the per-task figures (genecompass.summary)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from genecompass.errors import InputError
from genecompass.summary import (
    COLUMNS,
    headline_rows,
    insilico_rows,
    method_role,
    plot_pretraining_overview,
    plot_qc_overview,
    plot_task,
    summary_table,
)
from genecompass.tasks.annotation.metrics import seed_statistics
from genecompass.tasks.dosage.finetune import summarise


def seed_metrics(folder, method, accuracies, f1s):
    """A metrics.json in the annotation / CAME layout (per-seed mean, sd and consensus)."""
    out = folder / method
    out.mkdir(parents=True)
    mean, sd = seed_statistics(pd.DataFrame({"accuracy": accuracies, "macro_f1": f1s}), ("accuracy", "macro_f1"))
    data = {"method": method, "seeds": list(range(len(accuracies))), "mean": mean, "sd": sd,
            "consensus": {"accuracy": max(accuracies), "macro_f1": max(f1s), "labels": ["a", "b"]}}
    (out / "metrics.json").write_text(json.dumps(data))
    return out / "metrics.json"


def test_seed_metrics_give_mean_sd_and_consensus_rows(tmp_path):
    paths = [seed_metrics(tmp_path, "genecompass", [0.8, 0.9], [0.7, 0.9]),
             seed_metrics(tmp_path, "genecompass_no_pretraining", [0.6, 0.6, 0.9], [0.5, 0.5, 0.8]),
             seed_metrics(tmp_path, "logistic_regression", [0.95], [0.9])]
    table = summary_table([{"task": "annotation", "dataset": "d", "path": p} for p in paths])
    assert list(table.columns) == COLUMNS
    rows = table.set_index(["method", "subset", "metric"])
    assert rows.loc[("genecompass", "seeds", "accuracy"), "value"] == pytest.approx(0.85)
    assert rows.loc[("genecompass", "seeds", "macro_f1"), "spread"] == pytest.approx(math.sqrt(0.02))
    assert rows.loc[("genecompass_no_pretraining", "seeds", "accuracy"), "n"] == 3
    assert rows.loc[("genecompass", "consensus", "accuracy"), "value"] == pytest.approx(0.9)
    # the consensus has no sd; a single seed has none either
    assert math.isnan(rows.loc[("genecompass", "consensus", "accuracy"), "spread"])
    assert math.isnan(rows.loc[("logistic_regression", "seeds", "accuracy"), "spread"])
    assert rows.loc[("logistic_regression", "seeds", "accuracy"), "role"] == "baseline"
    assert rows.loc[("genecompass_no_pretraining", "seeds", "accuracy"), "role"] == "control"
    # within a metric, GeneCompass first, then controls, then baselines
    accuracy = table[(table["subset"] == "seeds") & (table["metric"] == "accuracy")]
    assert list(accuracy["method"]) == ["genecompass", "genecompass_no_pretraining", "logistic_regression"]


def test_method_tables_keep_subsets_and_drop_descriptive_columns(tmp_path):
    path = tmp_path / "metrics.tsv"
    pd.DataFrame({"method": ["cpa", "cpa", "genecompass_cpa", "train_mean"], "split": ["ood", "test", "ood", "ood"],
                  "r2_mean": [0.9, 0.8, 0.7, 0.5], "rmse": [0.1, 0.2, 0.3, 0.4],
                  "n_conditions": [12, 72, 12, 12]}).to_csv(path, sep="\t", index=False)
    table = summary_table([{"task": "cpa", "dataset": "screen", "path": path}])
    assert set(table["metric"]) == {"r2_mean", "rmse"}
    assert table.set_index(["method", "subset", "metric"]).loc[("cpa", "test", "r2_mean"), "value"] == 0.8
    roles = dict(zip(table["method"], table["role"], strict=False))
    assert roles == {"cpa": "tool", "genecompass_cpa": "genecompass", "train_mean": "baseline"}
    assert not table.loc[table["metric"] == "rmse", "higher_is_better"].any()
    assert table.loc[table["metric"] == "r2_mean", "higher_is_better"].all()
    # the figure shows the headline subset only
    assert set(headline_rows(table, "cpa")["subset"]) == {"ood"}


def test_fold_metrics_of_the_dosage_task(tmp_path):
    folds = {"genecompass": pd.DataFrame({"auc_gene": [0.9, 0.7, 0.8], "auc_token": [0.6, 0.6, 0.6]}),
             "knowledge_logistic": pd.DataFrame({"auc_gene": [0.5, 0.7]})}  # scores genes only
    path = tmp_path / "metrics.tsv"
    summarise(folds).to_csv(path, sep="\t", index=False)
    table = summary_table([{"task": "dosage", "dataset": "labels", "path": path}]).set_index(["method", "metric"])
    assert table.loc[("genecompass", "auc_gene"), "value"] == pytest.approx(0.8)
    assert table.loc[("genecompass", "auc_gene"), "spread"] == pytest.approx(0.1)
    assert table.loc[("knowledge_logistic", "auc_gene"), "n"] == 2
    assert table.loc[("knowledge_logistic", "auc_gene"), "role"] == "baseline"
    # a metric no fold could score is not a row
    assert ("knowledge_logistic", "auc_token") not in table.index
    assert ("genecompass", "auc_token") in table.index


def test_insilico_rows_from_the_three_outputs(tmp_path):
    (tmp_path / "state_shift.json").write_text(json.dumps(
        {"source": "s", "target": "t", "genes_mean": 0.05, "empirical_p": 0.01, "random_mean": 0.01,
         "random_sd": 0.02, "n_random": 100}))
    pd.DataFrame({"tf": ["A", "A", "A", "B", "B", "B"],
                  "set": ["targets", "housekeeping", "targets"] * 2,
                  "versus": ["other", "other", "housekeeping"] * 2,
                  "mean_set": [0.2, 0.05, 0.2, 0.4, 0.07, 0.4],
                  "mean_versus": [0.1, 0.1, 0.05, 0.1, 0.1, 0.07]}).to_csv(
        tmp_path / "deletion_tests.tsv", sep="\t", index=False)
    pd.DataFrame({"gene": ["g1", "g2", "g3", "g4"], "rank_t": [1, 2, 3, 4], "rank_u": [4, 3, 2, 1],
                  "driver_of": ["t", "", "t,u", ""]}).to_csv(tmp_path / "candidates.tsv", sep="\t", index=False)
    rows = pd.DataFrame(insilico_rows(tmp_path, "demo"))

    def one(method, metric, column="value", subset=None):
        found = rows[(rows["method"] == method) & (rows["metric"] == metric)
                     & ((rows["subset"] == subset) if subset else True)]
        assert len(found) == 1, (method, metric, subset)
        return found[column].item()

    assert one("drivers", "state_shift") == 0.05
    assert one("random_genes", "state_shift", "spread") == 0.02
    assert one("random_genes", "state_shift", "role") == "control"
    assert one("targets", "deletion_shift") == pytest.approx(0.3)
    assert one("targets", "deletion_shift", "n") == 2
    assert one("other", "deletion_shift") == pytest.approx(0.1)
    assert one("drivers", "driver_median_rank", subset="toward t (of 4)") == 2  # g1 and g3
    assert one("drivers", "driver_median_rank", subset="toward u (of 4)") == 2  # g3 only
    assert not one("drivers", "driver_median_rank", "higher_is_better", subset="toward u (of 4)")
    # the same run on a control model: every method carries the model, and all are controls
    control = pd.DataFrame(insilico_rows(tmp_path, "demo", model="no_knowledge", controls=("no_knowledge",)))
    assert set(control["method"]) == {f"{m}_no_knowledge" for m in rows["method"]}
    assert set(control["role"]) == {"control"} and set(control["dataset"]) == {"demo"}


def test_roles_of_ablations_and_tools():
    assert method_role("grn", "deepsem") == "tool"
    assert method_role("grn", "deepsem_prior_genecompass") == "genecompass"
    assert method_role("grn", "deepsem_prior_no_knowledge", controls=("no_knowledge",)) == "control"
    assert method_role("grn", "cosine_untrained") == "control"
    assert method_role("perturbation", "gears") == "tool"
    assert method_role("perturbation", "knn_go") == "baseline"


def test_old_layouts_are_named_with_the_fix(tmp_path):
    path = tmp_path / "genecompass" / "metrics.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"method": "genecompass", "metrics": {"accuracy": 0.9}}))
    with pytest.raises(InputError, match=r"metrics.json: field 'mean'.*Fix: rebuild"):
        summary_table([{"task": "annotation", "dataset": "d", "path": path}])
    table = tmp_path / "metrics.tsv"
    table.write_text("name\tauprc\nx\t0.1\n")
    with pytest.raises(InputError, match="'method'"):
        summary_table([{"task": "grn", "dataset": "d", "path": table}])


def test_task_figure_is_written_and_needs_its_headline_metrics(tmp_path):
    path = tmp_path / "metrics.tsv"
    pd.DataFrame({"method": ["deepce", "genecompass_deepce", "train_mean"], "pearson": [0.2, 0.1, 0.3],
                  "precision100_up": [0.2, 0.1, 0.2]}).to_csv(path, sep="\t", index=False)
    table = summary_table([{"task": "deepce", "dataset": "d", "path": path}])
    plot_task(table, "deepce", tmp_path / "deepce.png")
    assert (tmp_path / "deepce.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="headline"):
        plot_task(table[table["metric"] == "precision100_up"].assign(metric="other"), "deepce", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_qc_and_pretraining_overviews(tmp_path):
    qc = tmp_path / "qc.tsv"
    pd.DataFrame({"sample": ["a", "b"], "cells_input": [10, 12], "removed_min_genes": [2, 1],
                  "cells_kept": [8, 11]}).to_csv(qc, sep="\t", index=False)
    plot_qc_overview(qc, tmp_path / "qc.png")
    logs = {}
    for variant in ("genecompass", "no_knowledge"):
        logs[variant] = tmp_path / f"{variant}.csv"
        pd.DataFrame({"step": [10, 20], "id_loss": [7.0, 6.5], "value_loss": [1.0, 0.5],
                      "val_id_accuracy": [None, 0.01]}).to_csv(logs[variant], index=False)
    plot_pretraining_overview(logs, tmp_path / "pretraining.png")
    for name in ("qc.png", "pretraining.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    # not a QC summary / not a training log: named, nothing written
    pd.DataFrame({"sample": ["a"]}).to_csv(tmp_path / "bad.tsv", sep="\t", index=False)
    with pytest.raises(InputError, match="bad.tsv: field 'cells_kept'"):
        plot_qc_overview(tmp_path / "bad.tsv", tmp_path / "bad.png")
    (tmp_path / "bad.csv").write_text("epoch,loss\n1,2\n")
    with pytest.raises(InputError, match="bad.csv: field 'step'"):
        plot_pretraining_overview({"genecompass": tmp_path / "bad.csv"}, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_every_task_has_headline_metrics_in_the_tasks_order():
    from genecompass.summary import HEADLINE
    from genecompass.tasks import TASKS

    assert tuple(HEADLINE) == TASKS
