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
    # the demo builds its variants in the released layout: the release's knowledge order, positions of
    # the genes alone (the species vector is not a position)
    assert config["knowledge_kinds"] == ([] if variant == "no_knowledge" else
                                         ["promoter", "coexpression", "family", "grn"])
    assert config["species_embedding"] == "separate" and config["value_encoding"] == "scalar"
    assert config["max_position_embeddings"] == 128  # config model.max_length


def test_cell_embeddings_in_obsm(demo_run):
    truth = pd.read_csv(demo_run / "results/simulate/truth/cells.tsv", sep="\t")
    for sample in SAMPLES:
        # the cells of the model the tasks use: the demo's imported copy of its main variant
        adata = ad.read_h5ad(demo_run / f"results/embeddings/released/cells/{sample}.h5ad")
        qc = ad.read_h5ad(demo_run / f"results/qc/{sample}.h5ad", backed="r")
        assert list(adata.obs_names) == list(qc.obs_names)
        emb = adata.obsm["X_genecompass"]
        assert emb.shape == (adata.n_obs, 32) and np.isfinite(emb).all()
        assert adata.uns["genecompass"]["variant"] == "released"
    # Cells of one planted type sit closer to each other than to other types (centred, as PCA would).
    adata = ad.read_h5ad(demo_run / "results/embeddings/released/cells/human_s1.h5ad")
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
    # Pretraining made them more alike than at the initial weights. (By more than 0.1 in our own layout,
    # 0.95 against 0.59; the released layout's untrained model already puts them at 0.86, the pretrained
    # one at 0.91: README "Cell and gene embeddings".)
    assert (rows.loc[("genecompass", "homologous_centred"), "mean"]
            > rows.loc[("untrained", "homologous_centred"), "mean"] + 0.02)
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


def test_the_main_variant_exported_and_imported_as_a_released_model_embeds_as_before(demo_run):
    """The demo's main variant goes out in the released layout and comes back through model.source:
    the same tokens, the same embeddings, every gene known."""
    from datasets import Dataset

    from genecompass.embedding_files import load_sample_embeddings

    export = demo_run / "results/model/genecompass/released"
    bert = json.loads((export / "config.json").read_text())
    assert bert["architectures"] == ["BertForMaskedLM"] and bert["use_cls_token"] is True
    assert all(bert[f"use_{kind}"] for kind in ("promoter", "co_exp", "gene_family", "peca_grn", "values"))
    ours = pd.read_csv(demo_run / "results/tokens/dictionary.tsv", sep="\t")
    report = json.loads((demo_run / "results/model/released/import.json").read_text())
    medians = pd.read_csv(demo_run / "results/tokens/medians.tsv", sep="\t")
    # every median of ours went out and came back; a dictionary gene no sample expressed has none (the
    # release's default, 1, and no cell holds it)
    assert report["tokens"] == len(ours) and report["medians"]["released"] == len(medians)
    for sample in SAMPLES:
        tokens = json.loads((demo_run / f"results/model/released/tokens/{sample}.json").read_text())
        assert tokens["umi_share_unmapped"] == 0.0 and tokens["n_cells_written"] > 0
        mine = Dataset.from_file(str(demo_run / f"results/tokens/shards/{sample}.arrow"))
        theirs = Dataset.from_file(str(demo_run / f"results/model/released/tokens/{sample}.arrow"))
        assert mine["input_ids"] == theirs["input_ids"]
        np.testing.assert_allclose(np.concatenate(mine["values"]), np.concatenate(theirs["values"]), rtol=1e-6)
        a, _ = load_sample_embeddings(demo_run / f"results/embeddings/genecompass/samples/{sample}.npz")
        b, _ = load_sample_embeddings(demo_run / f"results/embeddings/released/samples/{sample}.npz")
        assert a.cell_ids == b.cell_ids
        np.testing.assert_allclose(a.cell_embeddings, b.cell_embeddings, atol=1e-5)
    assert (demo_run / "results/embeddings/released/cells.png").stat().st_size > 0
    assert (demo_run / "results/qc/summary.png").stat().st_size > 0


def test_every_task_runs_on_the_source_and_its_controls(demo_run):
    """model.source (the imported copy) under the methods' own names; the no-knowledge variant and the
    untrained model as ``<method>_<model>``; the summary calls those controls."""
    tasks = demo_run / "results/tasks"
    for control in ("no_knowledge", "untrained"):
        assert (tasks / f"came/demo_mouse_to_human/genecompass_came_{control}/metrics.json").exists()
        for task, dataset, method in (("perturbation", "demo_perturbseq", "genecompass_gears"),
                                      ("perturbation", "demo_perturbseq", "knn_genecompass"),
                                      ("cpa", "demo_sciplex", "genecompass_cpa"),
                                      ("deepce", "demo_l1000", "genecompass_deepce")):
            methods = set(pd.read_csv(tasks / task / dataset / "metrics.tsv", sep="\t")["method"])
            assert {method, f"{method}_{control}"} <= methods, (task, methods)
    # annotation and dosage: their no-pretraining method is the untrained control
    assert len(list((tasks / "annotation").glob("*/genecompass_no_knowledge/metrics.json"))) == 2
    dosage = set(pd.read_csv(tasks / "dosage/metrics.tsv", sep="\t")["method"])
    assert {"genecompass", "genecompass_no_knowledge", "genecompass_no_pretraining"} <= dosage
    grn = set(pd.read_csv(next((tasks / "grn").glob("*/metrics.tsv")), sep="\t")["method"])
    assert {"cosine_released", "cosine_genecompass", "cosine_no_knowledge", "cosine_untrained"} <= grn
    for control in ("no_knowledge", "untrained"):   # in-silico perturbation: the whole run per model
        for output in ("state_shift.json", "deletion_tests.tsv", "candidates.tsv"):
            assert (tasks / f"insilico/demo_human_{control}/{output}").exists()
    summary = pd.read_csv(demo_run / "results/summary/summary.tsv", sep="\t")
    roles = summary.drop_duplicates("method").set_index("method")["role"]
    assert roles["genecompass_came"] == "genecompass"
    assert roles["genecompass_came_no_knowledge"] == roles["genecompass_gears_untrained"] == "control"
    assert roles["drivers"] == "genecompass" and roles["drivers_untrained"] == "control"
    insilico = summary[summary["task"] == "insilico"]
    assert set(insilico["dataset"]) == {"demo_human"}


def test_a_cellxgene_file_goes_through_the_plain_path_with_only_its_sheet_row(demo_run, tmp_path):
    """config/own_data.yaml: a CELLxGENE-layout h5ad (log-normalised X, counts in .raw, Ensembl IDs in
    the index, symbols in feature_name) -> QC -> tokens -> embeddings with a released-layout model
    (the demo's export), given only its sheet row and the model."""
    import scanpy as sc

    counts = ad.read_h5ad(demo_run / "results/simulate/counts/human_s1.h5ad")
    genes = pd.read_csv(demo_run / "results/simulate/references/human_genes.tsv", sep="\t").set_index("ensembl_id")
    ids = [name.split(".")[0] for name in counts.var_names]
    var = pd.DataFrame({"feature_name": genes["symbol"].reindex(ids).fillna("").to_numpy()}, index=ids)
    published = ad.AnnData(counts.X.astype(np.float32), obs=counts.obs.copy(), var=var)
    published.raw = published.copy()
    sc.pp.normalize_total(published, target_sum=1e4)
    sc.pp.log1p(published)
    published.write_h5ad(tmp_path / "cellxgene.h5ad")
    (tmp_path / "samples.tsv").write_text(
        f"sample\tspecies\tpath\tformat\tcounts\nmine\thuman\t{tmp_path / 'cellxgene.h5ad'}\th5ad\traw\n")
    export = demo_run / "results/model/genecompass/released"
    references = demo_run / "results/simulate/references"
    overlay = {
        "samples": str(tmp_path / "samples.tsv"),
        "threads": {"tokens": 1, "model": 1},
        "references": {"human_genes": str(references / "human_genes.tsv"),
                       "mouse_genes": str(references / "mouse_genes.tsv"),
                       "orthologs": str(references / "orthologs_biomart.csv"),
                       "gene_groups": str(references / "hgnc_gene_groups.tsv")},
        "tokens": {"max_length": 512},
        "model": {"max_length": 128, "source": {
            "checkpoint": str(export), "token_dictionary": str(export / "human_mouse_tokens.pickle"),
            "medians": {s: str(export / f"{s}_gene_median_after_filter.pickle") for s in ("human", "mouse")}}},
        "embeddings": {"color_by": "cell_type"},
        "qc": {"min_cells": 4},
    }
    (tmp_path / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    work = tmp_path / "run"
    command = snakemake_command(work, "own_data", configfiles=(DEMO_CONFIG, ROOT / "config/own_data.yaml",
                                                               tmp_path / "overlay.yaml"),
                                samples=None, cores=2, extra=("--quiet", "rules"))
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-5000:]
    cells = ad.read_h5ad(work / "results/embeddings/released/cells/mine.h5ad")
    qc = ad.read_h5ad(demo_run / "results/qc/human_s1.h5ad", backed="r")
    assert list(cells.obs_names) == list(qc.obs_names)          # the same cells as the demo's own QC
    assert np.isfinite(cells.obsm["X_genecompass"]).all()
    tokens = json.loads((work / "results/model/released/tokens/mine.json").read_text())
    assert tokens["umi_share_unmapped"] == 0.0
    for path in ("results/qc/summary.png", "results/embeddings/released/cells.png",
                 "results/embeddings/released/genes_contextual.tsv.gz"):
        assert (work / path).stat().st_size > 0, path
    assert not (work / "results/model/genecompass").exists()   # nothing was pretrained
