"""Determinism: the same slice of the demo DAG, run twice with the same config, writes identical outputs.

The slice (27 jobs, about a minute on two cores) covers the corpus path and one of each kind of
downstream output that needs no model:

- references (gene tables, orthologs) -> QC of all five samples (+ the QC summary) -> token dictionary
  -> per-sample histograms -> gene medians -> token shards -> the corpus (train/validation split);
- knowledge of one kind: gene families -> gene2vec vectors (family_human; gensim, seeded);
- task metrics: GRN inference by Pearson correlation (its BEELINE-style input included) and the
  logistic-regression cell-type annotation baseline (two seeds).

Pretraining is left out (tests/test_workflow_model.py and tests/test_slurm.py compare its weights).

Both runs start from the simulated world of the session's demo run, copied into fresh working
directories. Where the two runs come from:

- locally, two fresh runs here (the demo run may be a stale one, GENECOMPASS_DEMO_RUN);
- under CI the session's demo run is itself a fresh run of the same code and config, so it is the
  first run and one fresh run here is the second (this halves the test's time; the demo ran the whole
  DAG with other jobs interleaved, which makes the comparison no weaker).

Every output file of the slice is compared by SHA-256, except those that embed values that change
from run to run; these are compared on their content fields (``CONTENT_COMPARED``):

- ``results/corpus/dataset/*/state.json``: ``_fingerprint`` is a random hash that ``datasets``
  draws when it cannot hash a transform's arguments (the split's index arrays);
- ``results/knowledge/*.safetensors``: ``train_seconds`` in the metadata is wall-clock time, and the
  metadata map is written in arbitrary order; the tensors are compared byte for byte;
- ``results/tasks/annotation/*/*/metrics.json``: ``seconds`` (wall-clock) fields.

No floating-point tolerance is needed: every number compared is bit-identical (the multi-threaded
jobs -- histograms, tokenize, Pearson GRN -- run with the same thread count in both runs, and the
tokenizer's kernels give each cell's result independently of the threads anyway).
Snakemake's own ``.snakemake_timestamp`` markers of directory outputs are not outputs and are skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import snakemake_command
from demo_slice import copy_from_demo, sha256

pytestmark = pytest.mark.workflow

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

TARGETS = (
    "results/corpus/dataset",
    "results/qc/summary.tsv",
    "results/knowledge/family_human.safetensors",
    "results/tasks/grn/demo_human/pearson/metrics.tsv",
    "results/tasks/annotation/demo_human/logistic_regression/metrics.json",
)
# Folders of the slice's outputs (all of their files are compared; the demo run has more there).
OUTPUT_FOLDERS = ("results/references", "results/qc", "results/tokens", "results/corpus", "results/knowledge",
                  "results/tasks/grn/demo_human/input", "results/tasks/grn/demo_human/pearson",
                  "results/tasks/annotation/demo_human/logistic_regression")
# The outputs the test must see (a check that the slice really ran what it should).
KEY_OUTPUTS = (
    *(f"results/qc/{s}.h5ad" for s in ("human_s1", "human_s2", "human_s3", "mouse_s1", "mouse_s2")),
    "results/tokens/dictionary.tsv", "results/tokens/medians.tsv",
    "results/corpus/dataset/train/data-00000-of-00001.arrow",
    "results/corpus/dataset/validation/data-00000-of-00001.arrow",
    "results/corpus/summary.json",
    "results/knowledge/family_human.safetensors", "results/knowledge/family_human.quality.json",
    "results/tasks/grn/demo_human/pearson/metrics.tsv",
    "results/tasks/annotation/demo_human/logistic_regression/metrics.json",
)


# ---------------------------------------------------------------- content comparisons


def _state_json(path: Path) -> dict:
    state = json.loads(path.read_text())
    state.pop("_fingerprint")   # random when datasets cannot hash the select() indices
    return state


def _safetensors(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    with safe_open(str(path), "np") as handle:
        metadata = dict(handle.metadata() or {})
        tensors = {name: sha256_of_array(handle.get_tensor(name)) for name in handle.keys()}
    metadata.pop("train_seconds")   # wall-clock time of the gensim training
    return metadata, tensors


def _without_seconds(value):
    """A JSON value with every "seconds" field (wall-clock time) removed."""
    if isinstance(value, dict):
        return {k: _without_seconds(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [_without_seconds(v) for v in value]
    return value


def _metrics_json(path: Path):
    return _without_seconds(json.loads(path.read_text()))


def sha256_of_array(array: np.ndarray) -> tuple:
    import hashlib

    array = np.ascontiguousarray(array)
    return array.dtype.str, array.shape, hashlib.sha256(array.tobytes()).hexdigest()


# (glob pattern relative to the working directory, what to compare)
CONTENT_COMPARED = (
    ("results/corpus/dataset/*/state.json", _state_json),
    ("results/knowledge/*.safetensors", _safetensors),
    ("results/tasks/annotation/*/*/metrics.json", _metrics_json),
)


def fingerprint(workdir: Path, relative: str):
    """What must be equal between runs: the file's SHA-256, or its content fields (CONTENT_COMPARED)."""
    path = workdir / relative
    for pattern, compare in CONTENT_COMPARED:
        if Path(relative).match(pattern):
            return compare(path)
    return sha256(path)


def slice_outputs(workdir: Path) -> list[str]:
    files = []
    for folder in OUTPUT_FOLDERS:
        files += [str(p.relative_to(workdir)) for p in (workdir / folder).rglob("*")
                  if p.is_file() and p.name != ".snakemake_timestamp"]
    return sorted(files)


def run_slice(demo: Path, workdir: Path) -> Path:
    copy_from_demo(demo, workdir, ["results/simulate"])
    result = subprocess.run(snakemake_command(workdir, *TARGETS, extra=("--quiet", "rules"), cores=2),
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return workdir


def assert_same_outputs(first: Path, second: Path, files: list[str]) -> None:
    differing = [f for f in files if fingerprint(first, f) != fingerprint(second, f)]
    assert not differing, f"outputs differ between {first} and {second}: {differing}"


def test_the_same_slice_twice_gives_identical_outputs(demo_run, tmp_path):
    second = run_slice(demo_run, tmp_path / "second")
    files = slice_outputs(second)
    assert set(KEY_OUTPUTS) <= set(files), sorted(set(KEY_OUTPUTS) - set(files))
    # The content-compared files are there and are compared on their fields.
    for pattern, _ in CONTENT_COMPARED:
        assert any(Path(f).match(pattern) for f in files), pattern

    if IN_CI:
        first = demo_run            # a fresh run of this code and config (conftest)
        assert all((first / f).is_file() for f in files), [f for f in files if not (first / f).is_file()]
    else:
        first = run_slice(demo_run, tmp_path / "first")
        assert slice_outputs(first) == files
    assert_same_outputs(first, second, files)
