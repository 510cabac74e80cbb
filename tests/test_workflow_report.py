"""The summary table and the Snakemake report of the demo run.

The summary must hold a row for every task x dataset x method that ran; the report
(`snakemake --report`) must hold every task's figure and the summary table, byte for byte;
and the HTML page must render in headless Chromium without a script error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_workflow

pytestmark = pytest.mark.workflow

TASKS = ["annotation", "came", "grn", "perturbation", "cpa", "deepce", "dosage", "insilico"]
CATEGORIES = ["0. Summary", "1. Data and QC", "2. Knowledge", "3. Pretraining and gene embeddings", "4. Tasks"]
# Besides the summary: each task's own figures, and the QC, knowledge, pretraining and embedding figures.
TASK_FIGURES = [
    "results/tasks/annotation/demo_human/genecompass/confusion.png",
    "results/tasks/came/demo_mouse_to_human/genecompass_came/confusion.png",
    "results/tasks/grn/demo_human/methods.png",
    "results/tasks/grn/demo_mouse/prior_sweep/genecompass.png",
    "results/tasks/perturbation/demo_perturbseq/pearson_delta.png",
    "results/tasks/cpa/demo_sciplex/dose_response.png",
    "results/tasks/deepce/demo_l1000/metrics.png",
    "results/tasks/dosage/roc.png",
    "results/tasks/insilico/demo_human/deletion.png",
    "results/tasks/insilico/demo_human/state_shift.png",
    "results/tasks/insilico/demo_human/candidates.png",
    "results/qc/human_s1.qc.png",
    "results/qc/summary.tsv",
    "results/knowledge/coverage.png",
    "results/model/genecompass/loss.png",
    "results/model/no_knowledge/loss.png",
    "results/analysis/gene_embeddings/similarity.png",
]


def report_variable(html: str, name: str):
    """A JSON variable (``var <name> = {...};``) of the report page."""
    found = re.search(rf'<script id="{name}">\s*var {name} = (.*?);\s*</script>', html, re.S)
    assert found, f"the report has no '{name}' data"
    return json.loads(found.group(1))


def build_report(run: Path, path: Path) -> Path:
    """``snakemake --report <path>`` (.html: one page; .zip: the page and the files) of a finished run."""
    result = run_workflow(run, extra=("--report", str(path)))
    assert result.returncode == 0, result.stderr[-5000:]
    return path


@pytest.fixture(scope="module")
def report_zip(demo_run, tmp_path_factory) -> Path:
    return build_report(demo_run, tmp_path_factory.mktemp("report") / "report.zip")


@pytest.fixture(scope="module")
def report_html(demo_run, tmp_path_factory) -> Path:
    return build_report(demo_run, tmp_path_factory.mktemp("report") / "report.html")


def methods_that_ran(run: Path) -> set[tuple[str, str, str]]:
    """(task, dataset, method) of every result the tasks wrote, read from their own outputs."""
    tasks = run / "results/tasks"
    ran = {(task, path.parent.parent.name, path.parent.name)
           for task in ("annotation", "came") for path in (tasks / task).glob("*/*/metrics.json")}
    for task in ("grn", "perturbation", "cpa", "deepce"):
        for path in (tasks / task).glob("*/metrics.tsv"):
            ran |= {(task, path.parent.name, method) for method in pd.read_csv(path, sep="\t")["method"]}
    ran |= {("dosage", "dosage_sensitive_tfs", method)
            for method in pd.read_csv(tasks / "dosage/metrics.tsv", sep="\t")["method"]}
    for folder in (tasks / "insilico").iterdir():   # <dataset> on the source, <dataset>_<model> on a control
        dataset, model = folder.name, ""
        for control in ("no_knowledge", "untrained"):
            if folder.name.endswith(f"_{control}"):
                dataset, model = folder.name.removesuffix(f"_{control}"), f"_{control}"
        ran |= {("insilico", dataset, method + model)
                for method in ("drivers", "random_genes", "targets", "housekeeping", "other")}
    return ran


def test_summary_table_has_a_row_for_every_task_dataset_method_that_ran(demo_run):
    summary = pd.read_csv(demo_run / "results/summary/summary.tsv", sep="\t", keep_default_na=False,
                          na_values=[""])
    assert set(summary["task"]) == set(TASKS)
    assert set(zip(summary["task"], summary["dataset"], summary["method"], strict=True)) == methods_that_ran(demo_run)
    assert set(summary["role"]) == {"genecompass", "tool", "control", "baseline"}
    # values are the tasks' own numbers
    grn = pd.read_csv(demo_run / "results/tasks/grn/demo_human/metrics.tsv", sep="\t").set_index("method")
    row = summary[(summary["task"] == "grn") & (summary["dataset"] == "demo_human") & (summary["method"] == "deepsem")
                  & (summary["metric"] == "auprc_ratio")]
    assert row["value"].item() == pytest.approx(grn.loc["deepsem", "auprc_ratio"], rel=1e-5)
    assert row["role"].item() == "tool"
    annotation = json.loads((demo_run / "results/tasks/annotation/demo_human/genecompass/metrics.json").read_text())
    row = summary[(summary["task"] == "annotation") & (summary["dataset"] == "demo_human")
                  & (summary["method"] == "genecompass") & (summary["subset"] == "seeds")
                  & (summary["metric"] == "macro_f1")]
    assert row["value"].item() == pytest.approx(annotation["mean"]["macro_f1"], rel=1e-5)
    assert row["n"].item() == len(annotation["seeds"]) and row["spread"].notna().all()


def test_report_holds_every_task_figure_and_the_summary_table(demo_run, report_zip):
    with zipfile.ZipFile(report_zip) as archive:
        names = set(archive.namelist())
        page = next(name for name in names if name.endswith("report.html"))
        html = archive.read(page).decode()
        results = report_variable(html, "results")
        wanted = ["results/summary/summary.tsv", *[f"results/summary/{task}.png" for task in TASKS],
                  "results/summary/qc.png", "results/summary/pretraining.png", *TASK_FIGURES]
        missing = [path for path in wanted if path not in results]
        assert not missing, f"not in the report: {missing}"
        for path in wanted:
            stored = f"{Path(page).parent}/{results[path]['data_uri']}"
            assert stored in names, path
            # the report carries the result itself, not a stale or empty copy
            assert archive.read(stored) == (demo_run / path).read_bytes(), path
            assert results[path]["caption"].strip(), f"{path} has no caption"
    categories = report_variable(html, "categories")
    assert sorted(categories) == CATEGORIES
    summary = [path for group in categories["0. Summary"].values() for path in group]
    assert set(summary) == {"results/summary/summary.tsv", *[f"results/summary/{task}.png" for task in TASKS],
                            "results/summary/qc.png", "results/summary/pretraining.png"}


def chromium() -> str | None:
    return next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)


def render(html: Path) -> tuple[str, list[str]]:
    """The page's visible text after its scripts ran in headless Chromium, and its script errors."""
    browser = chromium()
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=20000", "--dump-dom", html.as_uri()],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    body = result.stdout[result.stdout.find("<body"):]
    body = re.sub(r"<(script|style|noscript)\b.*?</\1>", " ", body, flags=re.S)
    text = " ".join(re.sub(r"<[^>]+>", " ", body).split())
    errors = [line for line in result.stderr.splitlines()
              if "CONSOLE" in line and re.search(r"Uncaught|Error:|Failed to load", line)]
    return text, errors


def page_problems(html: Path) -> list[str]:
    text, errors = render(html)
    problems = [f"script error: {line}" for line in errors]
    problems += [f"'{name}' is not rendered" for name in [*CATEGORIES, "GeneCompass workflow"] if name not in text]
    return problems


def test_report_renders_in_headless_chromium(report_html, tmp_path):
    if chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Chromium for the report check (Debian package 'chromium'; .ci/run installs it)")
        pytest.skip("no Chromium here (apt-get install chromium)")
    assert page_problems(report_html) == []
    # the check fails on a broken page: the same report with its results data corrupted
    broken = tmp_path / "broken.html"
    broken.write_text(report_html.read_text().replace("var results = {", "var results = {{", 1))
    assert any(problem.startswith("script error") for problem in page_problems(broken))
