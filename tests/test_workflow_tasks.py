"""The demo DAG's downstream tasks: cross-species annotation with CAME and GeneCompass+CAME."""

from __future__ import annotations

import json

import pandas as pd
import pytest

pytestmark = pytest.mark.workflow

PAIR = "results/tasks/came/demo_mouse_to_human"


@pytest.mark.parametrize("method, floor", [("came", 0.7), ("genecompass_came", 0.5)])
def test_came_annotates_the_query_species(demo_run, method, floor):
    metrics = json.loads((demo_run / PAIR / method / "metrics.json").read_text())
    assert metrics["method"] == method and metrics["seeds"] == [0, 1]
    assert [row["seed"] for row in metrics["per_seed"]] == [0, 1]
    # five planted types: chance is 0.2
    assert metrics["mean"]["accuracy"] > floor and metrics["consensus"]["macro_f1"] > floor
    assert metrics["n_reference_cells"] == 264 and metrics["n_query_cells"] == 528
    predictions = pd.read_csv(demo_run / PAIR / method / "predictions.tsv", sep="\t")
    assert len(predictions) == 528 and {"seed_0", "seed_1", "predicted", "true"} <= set(predictions.columns)
    assert set(predictions["predicted"]) <= set(predictions["true"])
    assert (demo_run / PAIR / method / "confusion.png").stat().st_size > 0



@pytest.mark.parametrize("method, floor", [("genecompass", 0.6), ("genecompass_no_pretraining", 0.6),
                                           ("logistic_regression", 0.9)])
def test_single_species_annotation_on_a_held_out_sample(demo_run, method, floor):
    out = demo_run / "results/tasks/annotation/demo_human" / method
    metrics = json.loads((out / "metrics.json").read_text())
    split = metrics["split"]
    assert split["test_groups"] == ["human_s2"]  # a whole held-out sample, never a random cell split
    # five planted types: chance is 0.2
    assert metrics["metrics"]["accuracy"] > floor and metrics["metrics"]["macro_f1"] > floor
    predictions = pd.read_csv(out / "predictions.tsv", sep="\t")
    assert len(predictions) == 264 and predictions["cell"].str.startswith("human_s2/").all()
    assert (out / "confusion.png").stat().st_size > 0
    if method != "logistic_regression":
        assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"] <= 30
