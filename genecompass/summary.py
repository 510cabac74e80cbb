"""One tidy table of every downstream task's results, and one figure per task.

Each task writes its metrics in its own layout (a JSON per method with seed
statistics, a method-by-metric TSV, fold statistics, in-silico JSON and TSVs).
The readers here turn each into rows of one table:

    task, dataset, method, role, subset, metric, value, spread, n, higher_is_better

``role`` places a method beside the others: ``genecompass`` (uses the
GeneCompass model), ``tool`` (the task's own published tool without
GeneCompass), ``control`` (the same model without pretraining or knowledge,
or a random-gene control) and ``baseline`` (simple methods). ``spread`` is the
sample sd over ``n`` seeds or folds (empty for a single run); ``subset`` is the
split, network or cell subgroup a value belongs to.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from genecompass.errors import InputError
from genecompass.utils import atomic_output

COLUMNS = ["task", "dataset", "method", "role", "subset", "metric", "value", "spread", "n", "higher_is_better"]
ROLES = ("genecompass", "tool", "control", "baseline")
ROLE_COLOURS = {"genecompass": "#c0392b", "tool": "#2c7fb8", "control": "#b0b0b0", "baseline": "#7fbf7b"}

# The published tool each task compares GeneCompass with (absent: the task has none).
TASK_TOOLS = {"came": "came", "grn": "deepsem", "perturbation": "gears", "cpa": "cpa", "deepce": "deepce"}

# The metrics and subset each task's figure shows; the table keeps every metric.
HEADLINE = {
    "annotation": (["accuracy", "macro_f1"], "seeds"),
    "came": (["accuracy", "macro_f1"], "seeds"),
    "grn": (["auprc_ratio", "epr"], None),
    "perturbation": (["pearson_delta", "pearson_delta_top20_de"], "all"),
    "cpa": (["r2_mean", "r2_mean_de"], "ood"),
    "deepce": (["pearson", "precision100_up"], None),
    "dosage": (["auc_gene", "auc_token"], None),
    "insilico": (["state_shift", "deletion_shift"], None),
}

# Metrics where smaller is better; every other metric is better when larger.
LOWER_IS_BETTER = ("rmse", "mse", "deviation", "wrong_direction", "empirical_p", "median_rank")

# Columns of the method tables that describe the run rather than score it.
DESCRIPTIVE_COLUMNS = {"density", "n_true", "n_candidates", "n_conditions", "n_profiles", "n_test_drugs"}


def higher_is_better(metric: str) -> bool:
    return not any(part in metric for part in LOWER_IS_BETTER)


def method_role(task: str, method: str, controls: tuple[str, ...] = ()) -> str:
    """Where ``method`` stands: the task's tool, a GeneCompass method, a control or a baseline.

    ``controls`` are name parts of the ablated model variants (e.g. ``no_knowledge``)."""
    if method == TASK_TOOLS.get(task):
        return "tool"
    if any(part in method for part in ("no_pretraining", "untrained", "random_genes", *controls)):
        return "control"
    if "genecompass" in method or method in {"drivers", "targets"}:
        return "genecompass"
    if task == "insilico":
        return "control"  # housekeeping and other genes after a TF deletion
    return "baseline"


def _row(task, dataset, method, metric, value, *, subset="", spread=math.nan, n=1, controls=()):
    return {"task": task, "dataset": dataset, "method": method, "role": method_role(task, method, controls),
            "subset": subset, "metric": metric, "value": float(value), "spread": float(spread), "n": int(n),
            "higher_is_better": higher_is_better(metric)}


def _fail(path, field: str, what: str):
    raise InputError(path, field, what, "rebuild it with the current workflow "
                     "(snakemake --forcerun <the rule that wrote it>)")


def seed_metrics_rows(path, task: str, dataset: str, controls=()) -> list[dict]:
    """A method's ``metrics.json`` with ``seeds``, ``mean`` and ``sd`` (annotation, CAME).

    The method is the JSON's folder name. Rows: mean ± sd over seeds (subset ``seeds``) and the
    consensus label of the mean probabilities (subset ``consensus``)."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data.get("mean"), dict) or "seeds" not in data:
        _fail(path, "mean", "no per-seed 'mean', 'sd' and 'seeds' (an older layout)")
    method, seeds = Path(path).parent.name, data["seeds"]
    rows = [_row(task, dataset, method, metric, value, subset="seeds", n=len(seeds), controls=controls,
                 spread=data["sd"].get(metric, math.nan) if len(seeds) > 1 else math.nan)
            for metric, value in data["mean"].items()]
    consensus = data.get("consensus") or {}
    rows += [_row(task, dataset, method, metric, consensus[metric], subset="consensus", n=len(seeds),
                  controls=controls)
             for metric in data["mean"] if isinstance(consensus.get(metric), (int, float))]
    return rows


def method_table_rows(path, task: str, dataset: str, controls=()) -> list[dict]:
    """A ``metrics.tsv`` with one row per method (and per ``split``, ``network`` or ``subgroup``)."""
    table = pd.read_csv(path, sep="\t")
    if "method" not in table.columns:
        _fail(path, "method", f"no 'method' column (columns: {list(table.columns)})")
    subset_columns = [c for c in ("split", "network", "subgroup") if c in table.columns]
    metrics = [c for c in table.columns if c not in {"method", *subset_columns, *DESCRIPTIVE_COLUMNS}
               and pd.api.types.is_numeric_dtype(table[c]) and not c.startswith("n_")]
    rows = []
    for record in table.to_dict(orient="records"):
        subset = "/".join(str(record[c]) for c in subset_columns)
        rows += [_row(task, dataset, record["method"], metric, record[metric], subset=subset, controls=controls)
                 for metric in metrics if pd.notna(record[metric])]
    return rows


def fold_metrics_rows(path, task: str, dataset: str, controls=()) -> list[dict]:
    """The dosage task's ``metrics.tsv``: method, metric, mean, sd, n_folds."""
    table = pd.read_csv(path, sep="\t")
    missing = {"method", "metric", "mean", "sd", "n_folds"} - set(table.columns)
    if missing:
        _fail(path, sorted(missing)[0], f"columns {sorted(missing)} are missing")
    return [_row(task, dataset, r["method"], r["metric"], r["mean"], subset="folds", n=r["n_folds"],
                 spread=r["sd"] if r["n_folds"] > 1 else math.nan, controls=controls)
            for r in table.to_dict(orient="records") if pd.notna(r["mean"])]  # NaN: no fold could score it


def insilico_rows(folder, dataset: str, model: str = "", controls=()) -> list[dict]:
    """In-silico perturbation of one dataset: the state shift of the drivers against random gene
    sets, the embedding shifts of TF targets, housekeeping and other genes after TF deletions, and
    the ranks of the planted (or known) drivers among the overexpression candidates.

    ``model``: a control model the run used (its rows' methods end in ``_<model>``); empty for the
    source model."""
    folder = Path(folder)
    rows = []
    suffix = f"_{model}" if model else ""

    def row(method, metric, value, **kwargs):
        return _row("insilico", dataset, f"{method}{suffix}", metric, value, controls=controls, **kwargs)

    shift = json.loads((folder / "state_shift.json").read_text())
    subset = f"{shift['source']}->{shift['target']}"
    rows.append(row("drivers", "state_shift", shift["genes_mean"], subset=subset))
    rows.append(row("drivers", "empirical_p", shift["empirical_p"], subset=subset))
    rows.append(row("random_genes", "state_shift", shift["random_mean"], subset=subset,
                     spread=shift["random_sd"], n=shift["n_random"]))

    tests = pd.read_csv(folder / "deletion_tests.tsv", sep="\t")
    # Each TF's mean shift per gene set, then mean ± sd over the deleted TFs.
    per_tf = pd.concat([tests[["tf", "set", "mean_set"]].rename(columns={"set": "genes", "mean_set": "shift"}),
                        tests[["tf", "versus", "mean_versus"]].rename(columns={"versus": "genes",
                                                                               "mean_versus": "shift"})])
    per_tf = per_tf.drop_duplicates(["tf", "genes"])
    for genes, group in per_tf.groupby("genes"):
        rows.append(row(str(genes), "deletion_shift", group["shift"].mean(), subset="TF deletion",
                         spread=group["shift"].std(ddof=1) if len(group) > 1 else math.nan, n=len(group)))

    candidates = pd.read_csv(folder / "candidates.tsv", sep="\t", keep_default_na=False)
    driver_of = candidates["driver_of"].astype(str).str.split(",")
    for column in [c for c in candidates.columns if c.startswith("rank_")]:
        target = column.removeprefix("rank_")
        drivers = candidates.loc[[target in states for states in driver_of]]
        if len(drivers):
            rows.append(row("drivers", "driver_median_rank", drivers[column].median(),
                             subset=f"toward {target} (of {len(candidates)})", n=len(drivers)))
    return rows


def task_rows(task: str, dataset: str, path, controls=(), model: str = "") -> list[dict]:
    """Rows of one task's result file (or, for in-silico perturbation, its result folder; ``model``: the
    control model of its run, empty for the source)."""
    if task in {"annotation", "came"}:
        return seed_metrics_rows(path, task, dataset, controls)
    if task == "dosage":
        return fold_metrics_rows(path, task, dataset, controls)
    if task == "insilico":
        return insilico_rows(path, dataset, model, controls)
    if task in {"grn", "perturbation", "cpa", "deepce"}:
        return method_table_rows(path, task, dataset, controls)
    raise ValueError(f"unknown task '{task}' (known: {sorted(HEADLINE)})")


def summary_table(entries: list[dict], controls=()) -> pd.DataFrame:
    """The tidy table of ``entries`` ({task, dataset, path}), methods ordered by role."""
    rows = [row for entry in entries
            for row in task_rows(entry["task"], entry["dataset"], entry["path"], controls, entry.get("model", ""))]
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["_role"] = table["role"].map(ROLES.index)
    table = table.sort_values(["task", "dataset", "subset", "metric", "_role", "method"], kind="stable")
    return table.drop(columns="_role").reset_index(drop=True)


def headline_rows(table: pd.DataFrame, task: str) -> pd.DataFrame:
    """The rows a task's figure shows: its headline metrics in its headline subset."""
    metrics, subset = HEADLINE[task]
    rows = table[(table["task"] == task) & table["metric"].isin(metrics)]
    if subset is not None and (rows["subset"] == subset).any():
        rows = rows[rows["subset"] == subset]
    return rows


def plot_task(table: pd.DataFrame, task: str, path) -> None:
    """Horizontal bars of the headline metrics: one panel per dataset (and subset) and metric,
    methods coloured by role, sd over seeds or folds as error bars."""
    from matplotlib.patches import Patch

    from genecompass.plotting import plt, save_figure

    rows = headline_rows(table, task)
    if rows.empty:
        raise ValueError(f"task '{task}' has none of its headline metrics {HEADLINE[task][0]} in the table")
    panels = [(key, group) for key, group in rows.groupby(["dataset", "subset", "metric"], sort=False)]
    metrics = list(dict.fromkeys(rows["metric"]))
    places = list(dict.fromkeys((d, s) for (d, s, _), _ in panels))
    n_methods = rows.groupby(["dataset", "subset", "metric"]).size().max()
    fig, axes = plt.subplots(len(places), len(metrics), squeeze=False,
                             figsize=(4.4 * len(metrics), 0.8 + (0.3 * n_methods + 1.0) * len(places)))
    for axis in axes.flat:
        axis.set_visible(False)
    for (dataset, subset, metric), group in panels:
        axis = axes[places.index((dataset, subset)), metrics.index(metric)]
        axis.set_visible(True)
        group = group.iloc[::-1]  # the first method on top
        spread = group["spread"].where(group["spread"].notna(), 0.0) if group["spread"].notna().any() else None
        bars = axis.barh(group["method"], group["value"], xerr=spread, color=group["role"].map(ROLE_COLOURS),
                         error_kw={"lw": 0.8, "capsize": 2})
        axis.bar_label(bars, labels=[f"{v:.3g}" for v in group["value"]], fontsize=6, padding=2)
        axis.margins(x=0.18)
        arrow = "higher is better" if group["higher_is_better"].iloc[0] else "lower is better"
        where = f"{dataset}" + (f" · {subset}" if subset else "")
        axis.set_title(f"{where}\n{metric}\n({arrow})", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.axvline(0, color="black", lw=0.5)
    handles = [Patch(color=ROLE_COLOURS[role], label=role) for role in ROLES if role in set(rows["role"])]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.suptitle(f"{task}: GeneCompass beside the task's tool, controls and baselines", fontsize=9)
    height = fig.get_size_inches()[1]  # keep about 0.35 inch for the legend and the title
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1 - 0.3 / height))
    save_figure(fig, path)


def write_table(table: pd.DataFrame, path) -> None:
    with atomic_output(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def plot_qc_overview(qc_summary, path) -> None:
    """Cells kept and removed by each QC filter, one bar per sample (from ``results/qc/summary.tsv``)."""
    from genecompass.plotting import plt, save_figure

    table = pd.read_csv(qc_summary, sep="\t")
    missing = {"sample", "cells_kept"} - set(table.columns)
    if missing:
        _fail(qc_summary, sorted(missing)[0], f"columns {sorted(missing)} are missing")
    parts = ["cells_kept", *[c for c in table.columns if c.startswith("removed_")]]
    fig, axis = plt.subplots(figsize=(7.5, 0.8 + 0.35 * len(table)))
    left = pd.Series(0.0, index=table.index)
    colours = plt.get_cmap("tab10")
    for i, part in enumerate(parts):
        label = "kept" if part == "cells_kept" else part.removeprefix("removed_").replace("_", " ")
        axis.barh(table["sample"], table[part], left=left, label=label, color=colours(i))
        left += table[part]
    axis.invert_yaxis()
    axis.set_xlabel("cells")
    axis.set_title("QC: cells kept and removed by each filter", fontsize=9)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    save_figure(fig, path)


PRETRAINING_PANELS = (("id_loss", "training gene-ID loss"), ("value_loss", "training value loss"),
                      ("val_id_accuracy", "validation gene-ID accuracy"))


def plot_pretraining_overview(logs: dict[str, str], path) -> None:
    """Every model variant's pretraining curves in one figure (from each ``training_log.csv``)."""
    from genecompass.plotting import plt, save_figure

    fig, axes = plt.subplots(1, len(PRETRAINING_PANELS), figsize=(4.2 * len(PRETRAINING_PANELS), 3.4))
    for variant, log_path in logs.items():
        log = pd.read_csv(log_path)
        if "step" not in log.columns:
            _fail(log_path, "step", f"not a training log (columns: {list(log.columns)})")
        for axis, (column, title) in zip(axes, PRETRAINING_PANELS, strict=True):
            points = log[["step", column]].dropna() if column in log.columns else log[["step"]].iloc[:0]
            if len(points):
                axis.plot(points["step"], points[column], marker="o" if column.startswith("val_") else None,
                          markersize=3, lw=1.2, label=variant)
            axis.set_title(title, fontsize=9)
            axis.set_xlabel("step")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
