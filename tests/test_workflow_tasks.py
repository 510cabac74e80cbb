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

