"""The demo DAG's model part: pretraining, resume after a kill, embeddings and the homology analysis."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import DEMO_CONFIG, ROOT, snakemake_command

pytestmark = pytest.mark.workflow

SAMPLES = ["human_s1", "human_s2", "human_s3", "mouse_s1", "mouse_s2"]
VARIANTS = ["genecompass", "no_knowledge"]


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("variant", VARIANTS)
def test_pretraining_ran_and_learned(demo_run, variant):
    out = demo_run / "results/model" / variant
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == summary["total_steps"] > 0
    assert summary["device"] == "cpu" and summary["world_size"] == 1
    rows = read_rows(out / "training_log.csv")
    losses = [float(r["loss"]) for r in rows]
    assert np.mean(losses[-3:]) < np.mean(losses[:2])  # the loss went down
    assert summary["final_metrics"]["val_masked_genes"] > 0
    assert (out / "loss.png").stat().st_size > 0
    config = json.loads((out / "model/config.json").read_text())
    assert config["model_type"] == "genecompass"
    assert config["knowledge_kinds"] == ([] if variant == "no_knowledge" else
                                         ["grn", "promoter", "family", "coexpression"])
    assert config["max_position_embeddings"] == 129  # config model.max_length + species token


def test_cell_embeddings_in_obsm(demo_run):
    truth = pd.read_csv(demo_run / "results/simulate/truth/cells.tsv", sep="\t")
    for sample in SAMPLES:
        adata = ad.read_h5ad(demo_run / f"results/embeddings/genecompass/cells/{sample}.h5ad")
        qc = ad.read_h5ad(demo_run / f"results/qc/{sample}.h5ad", backed="r")
        assert list(adata.obs_names) == list(qc.obs_names)
        emb = adata.obsm["X_genecompass"]
        assert emb.shape == (adata.n_obs, 32) and np.isfinite(emb).all()
        assert adata.uns["genecompass"]["variant"] == "genecompass"
    # Cells of one planted type sit closer to each other than to other types (centred, as PCA would).
    adata = ad.read_h5ad(demo_run / "results/embeddings/genecompass/cells/human_s1.h5ad")
    emb = adata.obsm["X_genecompass"]
    emb = emb - emb.mean(axis=0)
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    types = adata.obs["cell_type"].to_numpy()
    sims = emb @ emb.T
    same = (types[:, None] == types[None, :]) & ~np.eye(len(types), dtype=bool)
    assert sims[same].mean() > sims[types[:, None] != types[None, :]].mean()
    assert set(types) <= set(truth["cell_type"])


def test_gene_tables_are_keyed_by_ensembl_id(demo_run):
    dictionary = pd.read_csv(demo_run / "results/tokens/dictionary.tsv", sep="\t", keep_default_na=False)
    contextual = pd.read_csv(demo_run / "results/embeddings/genecompass/genes_contextual.tsv.gz", sep="\t",
                             keep_default_na=False)
    assert set(contextual["species"]) == {"human", "mouse"}
    human = contextual[contextual["species"] == "human"]
    mouse = contextual[contextual["species"] == "mouse"]
    assert human["ensembl_id"].str.startswith("ENSG").all()
    assert mouse["ensembl_id"].str.startswith("ENSMUSG").all()
    assert not human["token_id"].duplicated().any() and (contextual["n_cells"] > 0).all()
    expected = dictionary.set_index("token_id").loc[mouse["token_id"], "mouse_ensembl_id"].to_numpy()
    assert (mouse["ensembl_id"].to_numpy() == expected).all()
    static = pd.read_csv(demo_run / "results/embeddings/genecompass/genes_static.tsv.gz", sep="\t",
                         keep_default_na=False)
    assert len(static) == (dictionary["token_class"] != "special").sum()
    assert len([c for c in static.columns if c.startswith("dim_")]) == 32


def test_homologs_more_similar_than_non_homologs(demo_run):
    summary = pd.read_csv(demo_run / "results/analysis/gene_embeddings/summary.tsv", sep="\t")
    assert set(summary["variant"]) == {*VARIANTS, "untrained"}
    rows = summary.set_index(["variant", "comparison"])
    for variant in [*VARIANTS, "untrained"]:
        homologous = rows.loc[(variant, "homologous")]
        assert homologous["mean"] > rows.loc[(variant, "non_homologous"), "mean"], variant
        assert homologous["auroc_vs_non_homologous"] > 0.7, variant
        assert homologous["p_greater_than_non_homologous"] < 1e-6, variant
        assert abs(rows.loc[(variant, "within_cell_human"), "mean"]) < 0.95  # not collapsed to one vector
    # The pretrained knowledge model separates homologs clearly, and pretraining made them more alike.
    assert rows.loc[("genecompass", "homologous"), "auroc_vs_non_homologous"] > 0.9
    assert rows.loc[("genecompass", "homologous_centred"), "auroc_vs_non_homologous"] > 0.9
    assert abs(rows.loc[("genecompass", "non_homologous_centred"), "mean"]) < 0.1
    assert (rows.loc[("genecompass", "homologous_centred"), "mean"]
            > rows.loc[("untrained", "homologous_centred"), "mean"] + 0.1)
    assert (demo_run / "results/analysis/gene_embeddings/similarity.png").stat().st_size > 0


def _pretrain_pids(workdir: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if "scripts/pretrain.py" in cmdline and "PYTHONSAFEPATH" not in cmdline and Path(cwd) == workdir.resolve():
            pids.append(int(proc.name))
    return pids


def test_killed_pretraining_resumes_from_its_checkpoint(demo_run, tmp_path):
    """SIGKILL the pretraining process mid-run; the re-run resumes and ends like an uninterrupted run."""
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    overlay = tmp_path / "resume.yaml"
    overlay.write_text(yaml.safe_dump({"pretrain": {**config["pretrain"], "max_steps": 60, "checkpoint_every": 4,
                                                    "eval_every": 30, "threads": 1}}))
    target = "results/model/genecompass/summary.json"

    def copy_of_demo(name: str) -> Path:
        workdir = tmp_path / name
        shutil.copytree(demo_run, workdir, symlinks=True, ignore=shutil.ignore_patterns("model", "embeddings",
                                                                                        "analysis"))
        return workdir

    def command(workdir: Path) -> list[str]:
        return snakemake_command(workdir, target, configfiles=(DEMO_CONFIG, overlay),
                                 extra=("--rerun-incomplete", "--quiet", "rules"))

    interrupted = copy_of_demo("interrupted")
    run_dir = interrupted / "results/model/genecompass/run/checkpoints"
    process = subprocess.Popen(command(interrupted), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = False
    deadline = time.time() + 600
    while process.poll() is None and time.time() < deadline:
        if (run_dir / "step-8" / "state.pt").exists():
            pids = _pretrain_pids(interrupted)
            if pids:
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                killed = True
                break
        time.sleep(0.02)
    output = process.communicate(timeout=120)[0]
    assert killed, f"pretraining finished or never checkpointed before it could be killed:\n{output[-3000:]}"
    assert process.returncode != 0
    assert not (interrupted / target).exists()
    steps = sorted(int(p.name.split("-")[1]) for p in run_dir.iterdir() if (p / "state.pt").exists())
    assert steps and steps[-1] >= 8 and steps[-1] < 60

    resumed = subprocess.run(command(interrupted), capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-5000:]
    summary = json.loads((interrupted / target).read_text())
    assert summary["resumed"] and summary["steps"] == 60
    log = (interrupted / "results/logs/model/pretrain_genecompass.log").read_text()
    assert f"resumed from results/model/genecompass/run/checkpoints/step-{steps[-1]}" in log

    uninterrupted = copy_of_demo("uninterrupted")
    full = subprocess.run(command(uninterrupted), capture_output=True, text=True, timeout=900)
    assert full.returncode == 0, full.stderr[-5000:]
    rows_a = read_rows(interrupted / "results/model/genecompass/training_log.csv")
    rows_b = read_rows(uninterrupted / "results/model/genecompass/training_log.csv")
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    from safetensors.torch import load_file

    a = load_file(interrupted / "results/model/genecompass/model/model.safetensors")
    b = load_file(uninterrupted / "results/model/genecompass/model/model.safetensors")
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5), name
