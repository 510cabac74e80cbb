"""Drug-response tasks: the demo experiments, the L1000/SMILES readers, the splits, the baselines
and the metrics of the CPA and DeepCE tasks (the models have their own test files)."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from genecompass.drug.data import (
    load_dose_response,
    plate_to_anndata,
    read_gct,
    read_smiles_table,
)
from genecompass.drug.molecules import morgan_fingerprints
from genecompass.errors import InputError
from genecompass.simulate.drug import demo_drug_table, write_drug_screen, write_gct
from genecompass.tasks.cpa import dose_response as dr
from genecompass.tasks.deepce import profiling as pf
from genecompass.tasks.deepce.metrics import profile_metrics

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "drug"
PLATE = SHARED / "l1000_LJP005_A375_24h_level3.gct"
SMALL = {"cells_per_condition": 8, "control_cells": 40, "plate_drugs": 20, "plate_controls": 6,
         "sc_doses": [0.01, 0.1, 1.0, 10.0]}
H5AD_ENTRY = {"format": "h5ad", "drug_key": "condition", "dose_key": "dose_val", "control_value": "control",
              "covariate_keys": ["cell_type"]}


@pytest.fixture(scope="module")
def screen(tmp_path_factory):
    out = tmp_path_factory.mktemp("drug")
    return {k: Path(v) for k, v in write_drug_screen(out, seed=0, params=SMALL).items()}


def test_demo_drugs_are_real_parsable_compounds():
    table = demo_drug_table()
    assert len(table) >= 60 and table["drug"].is_unique
    bits = morgan_fingerprints(table["smiles"].tolist(), names=table["drug"].tolist())
    assert bits.shape == (len(table), 2048) and (bits.sum(axis=1) > 5).all()
    # triple bonds ('#') survive the comment handling of the table
    assert table["smiles"].str.contains("#").any()


def test_demo_screen_layout_and_planted_dose_response(screen):
    adata = ad.read_h5ad(screen["h5ad"])
    assert {"condition", "dose_val", "cell_type", "control"} <= set(adata.obs.columns)
    assert (adata.obs.loc[adata.obs["condition"] == "control", "dose_val"] == 0).all()
    assert adata.obs.groupby(["cell_type", "condition", "dose_val"], observed=True).size().drop(
        "control", level=1).eq(8).all()
    truth = pd.read_csv(screen["truth"], sep="\t", index_col=[0, 1, 2])
    assert list(truth.columns) == list(adata.var_names)
    # the Hill curve: little change below EC50/10, and the strongest gene moves by a visible amount
    moved = []
    for _, curve in truth.groupby(level=[0, 1]):
        change = (curve.iloc[-1] - curve.iloc[0]).abs()
        moved.append(change.max())
    assert max(moved) > 0.5
    smiles = read_smiles_table(screen["smiles"])
    assert set(adata.obs["condition"]) - {"control"} <= set(smiles)


def test_gct_round_trip_and_errors(tmp_path):
    values = pd.DataFrame(np.arange(12, dtype=float).reshape(3, 4) / 7, index=["a_at", "b_at", "c_at"],
                          columns=[f"w{i}" for i in range(4)])
    rows = pd.DataFrame({"id": values.index, "pr_gene_symbol": ["A", "B", "C"], "pr_is_lmark": "Y"})
    cols = pd.DataFrame({"id": values.columns, "pert_id": ["DMSO", "x", "x", "y"],
                         "pert_type": ["ctl_vehicle", "trt_cp", "trt_cp", "trt_cp"], "pert_dose": [-666, 1, 10, 1],
                         "cell_id": "C1"})
    path = tmp_path / "plate.gct"
    write_gct(values, rows, cols, path)
    read_values, read_rows, read_cols = read_gct(path)
    np.testing.assert_allclose(read_values.to_numpy(), values.to_numpy(), atol=1e-4)
    assert list(read_cols["pert_dose"]) == [-666, 1, 10, 1] and list(read_rows["pr_gene_symbol"]) == ["A", "B", "C"]
    adata = plate_to_anndata(path)
    assert list(adata.obs["drug"]) == ["control", "x", "x", "y"] and list(adata.obs["dose"]) == [0, 1, 10, 1]

    truncated = tmp_path / "truncated.gct"
    truncated.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(InputError, match="field 'data'.*truncated"):
        read_gct(truncated)
    other = tmp_path / "other.gct"
    other.write_text("gene\tvalue\nA\t1\n")
    with pytest.raises(InputError, match="field 'header'"):
        read_gct(other)


def test_smiles_table_header_and_duplicates(tmp_path):
    path = tmp_path / "smiles.csv"
    path.write_text("pert_id,smiles\nd1,CCO\nd2,c1ccccc1\n")
    assert read_smiles_table(path) == {"d1": "CCO", "d2": "c1ccccc1"}
    path.write_text("d1,CCO\nd1,CCN\n")
    with pytest.raises(InputError, match="field 'id'.*listed twice"):
        read_smiles_table(path)


def test_dose_response_loader_names_bad_fields(screen, tmp_path):
    adata = ad.read_h5ad(screen["h5ad"])
    with pytest.raises(InputError, match="obs.dose"):
        load_dose_response({**H5AD_ENTRY, "dose_key": "dose"}, screen["h5ad"])
    broken = adata.copy()
    broken.obs.loc[broken.obs_names[-1], "dose_val"] = 0.0
    path = tmp_path / "broken.h5ad"
    broken.write_h5ad(path)
    with pytest.raises(InputError, match="without a positive dose"):
        load_dose_response(H5AD_ENTRY, path)
    with pytest.raises(InputError, match="covariate column missing"):
        load_dose_response({**H5AD_ENTRY, "covariate_keys": ["plate"]}, screen["h5ad"])


@pytest.fixture(scope="module")
def prepared(screen):
    prepared, report = dr.prepare({**H5AD_ENTRY, "ood_doses": [0.1]}, screen["h5ad"], {"n_de_genes": 20}, seed=0)
    return prepared, report


def test_cpa_split_holds_out_doses(prepared, screen):
    prepared, report = prepared
    obs = prepared.adata.obs
    assert (obs.loc[obs["split"] == "ood", "dose"] == 0.1).all()
    assert not ((obs["split"] != "ood") & (obs["dose"] == 0.1)).any()
    assert set(obs.loc[obs["control"], "split"]) == {"train", "val", "test"}
    assert report["conditions_per_split"]["ood"] == 3 * 4  # cell types x drugs at the held-out dose
    assert all(len(genes) == 20 for genes in prepared.de_genes.values())
    with pytest.raises(InputError, match="ood_doses"):
        dr.prepare({**H5AD_ENTRY, "ood_doses": [0.3]}, screen["h5ad"], {}, 0)
    smiles = read_smiles_table(screen["smiles"])
    without_one = {k: v for k, v in smiles.items() if k != "Tofacitinib"}
    fewer, report = dr.prepare(H5AD_ENTRY, screen["h5ad"], {}, 0, without_one)
    assert report["drugs_without_smiles"] == ["Tofacitinib"] and "Tofacitinib" not in set(fewer.adata.obs["drug"])
    assert fewer.adata.obs["control"].sum() == obs["control"].sum()


def test_train_mean_and_ridge_baselines(prepared, screen):
    prepared, _ = prepared
    obs, X = prepared.adata.obs, np.asarray(prepared.adata.X)
    predicted, curves, _ = dr.run_method("train_mean", prepared, None, seed=0)
    # a seen drug's Train Mean is the mean of its training cells (any dose) in the same cell type
    condition = obs.loc[obs["split"] == "ood", "condition"].iloc[0]
    row = predicted.obs.loc[condition]
    cells = (obs["split"] == "train") & (obs["drug"] == row["drug"]) & (obs["cell_type"] == row["cell_type"])
    np.testing.assert_allclose(predicted[condition].X[0], X[cells.to_numpy()].mean(0), rtol=1e-5, atol=1e-6)
    # flat curves
    assert curves.groupby(["cell_type", "drug", "gene"])["predicted"].nunique().eq(1).all()
    smiles = read_smiles_table(screen["smiles"])
    ridge, ridge_curves, _ = dr.run_method("ridge_fingerprint", prepared, smiles, seed=0)
    assert ridge.shape == predicted.shape and (ridge.layers["variance"] >= 0).all()
    assert ridge_curves.groupby(["cell_type", "drug", "gene"])["predicted"].nunique().gt(1).all()
    with pytest.raises(ValueError, match="SMILES"):
        dr.run_method("ridge_fingerprint", prepared, None, seed=0)


def test_cpa_r2_metrics_and_shape_scores(prepared):
    prepared, _ = prepared
    obs, X = prepared.adata.obs, np.asarray(prepared.adata.X)
    conditions = prepared.conditions()
    # an oracle that knows every condition's mean over all its cells scores near 1 on the mean
    means = np.vstack([X[(obs["condition"] == c).to_numpy()].mean(0) for c in conditions["condition"]])
    oracle = ad.AnnData(means, obs=conditions.set_index("condition"))
    oracle.layers["variance"] = np.vstack([X[(obs["condition"] == c).to_numpy()].var(0)
                                           for c in conditions["condition"]])
    table = dr.evaluate(prepared, {"oracle": oracle})
    assert set(table["split"]) == {"train", "test", "ood"}
    assert table.loc[table["split"] == "ood", "r2_mean"].min() == pytest.approx(1.0)
    assert dr.aggregate(table).set_index("split").loc["train", "r2_mean"] > 0.95

    grid = np.geomspace(0.01, 10, 9)
    truth = pd.DataFrame({"g1": np.tanh(np.log10(grid) + 1)},
                         index=pd.MultiIndex.from_arrays([["t"] * 9, ["d"] * 9, grid],
                                                         names=["cell_type", "drug", "dose"]))
    base = {"cell_type": "t", "drug": "d", "dose": grid, "gene": "g1"}
    curves = {"perfect": pd.DataFrame({**base, "predicted": truth["g1"].to_numpy() + 3.0}),
              "flat": pd.DataFrame({**base, "predicted": 0.5}),
              "reversed": pd.DataFrame({**base, "predicted": -truth["g1"].to_numpy()})}
    scores = dr.curve_shape_scores(curves, truth, ["cell_type"]).set_index("method")["shape_r2"]
    assert scores["perfect"] == pytest.approx(1.0) and scores["flat"] == pytest.approx(0.0)
    assert scores["reversed"] == pytest.approx(-3.0)  # 1 - (2t)²/t²


def test_signatures_split_whole_drugs_and_metrics():
    X = np.array([[1.0, 2.0], [3.0, 2.0], [2.0, 5.0], [4.0, 1.0], [6.0, 3.0]], np.float32)
    obs = pd.DataFrame({"drug": ["control", "control", "a", "a", "b"], "drug_name": "n",
                        "dose": [0.0, 0.0, 1.0, 1.0, 1.0], "control": [True, True, False, False, False],
                        "cell_id": "C"}, index=[f"w{i}" for i in range(5)])
    adata = ad.AnnData(X, obs=obs, var=pd.DataFrame({"gene_symbol": ["G1", "G2"]}, index=["p1", "p2"]))
    table = pf.signatures(adata, "cell_id")
    # change against the vehicle median (2, 2), replicate wells averaged
    np.testing.assert_allclose(table[table.obs["drug"] == "a"].X[0], [1.0, 1.0])
    assert table.obs.loc[table.obs["drug"] == "a", "n_wells"].item() == 2

    parts = pf.split_drugs([f"d{i}" for i in range(50)], 0.2, 0.1, seed=3)
    assert pd.Series(parts).value_counts().to_dict() == {"train": 35, "test": 10, "val": 5}
    assert parts == pf.split_drugs([f"d{i}" for i in reversed(range(50))], 0.2, 0.1, seed=3)

    truth = np.array([np.arange(200, dtype=float) - 100])
    perfect = profile_metrics(truth, truth * 2, ks=(10,)).iloc[0]
    assert perfect["pearson"] == pytest.approx(1)
    assert perfect["precision10_up"] == 1 and perfect["precision10_down"] == 1
    reversed_ = profile_metrics(truth, -truth, ks=(10,)).iloc[0]
    assert reversed_["spearman"] == pytest.approx(-1) and reversed_["precision10_up"] == 0
    assert profile_metrics(truth, truth, ks=(10,)).iloc[0]["rmse"] == 0


def test_deepce_task_holds_out_drugs_and_baselines(screen):
    prepared, report = pf.prepare({"covariate_keys": ["cell_id"]}, screen["plate"], screen["smiles"],
                                  {"split": {"test_fraction": 0.2, "val_fraction": 0.1}}, seed=0)
    obs = prepared.signatures.obs
    drugs = {split: set(obs.loc[obs["split"] == split, "drug"]) for split in ("train", "val", "test")}
    assert not drugs["test"] & drugs["train"] and not drugs["val"] & drugs["train"]
    assert report["n_drugs"] == 20 and len(drugs["test"]) == 4
    predictions = {m: pf.run_method(m, prepared, seed=0)[0] for m in ("train_mean", "ridge_fingerprint")}
    tables = pf.evaluate(prepared, predictions, ks=(10, 50))
    metrics = tables["metrics"].set_index("method")
    assert (metrics["n_profiles"] == len(prepared.table("test"))).all()
    assert metrics[["pearson", "precision10_up", "precision50_down"]].stack().between(-1, 1).all()
    with pytest.raises(ValueError, match="miss test signatures"):
        pf.evaluate(prepared, {"short": predictions["train_mean"].iloc[1:]})


@pytest.mark.realdata
@pytest.mark.skipif(not PLATE.exists(), reason="../shared/data/drug absent")
def test_real_l1000_plate():
    adata = plate_to_anndata(PLATE)
    assert adata.shape == (354, 978) and adata.obs["control"].sum() == 26
    assert adata.uns["source"]["dropped_wells"] == 23          # trt_poscon wells
    assert adata.obs.loc[~adata.obs["control"], "drug"].nunique() == 55
    assert set(adata.obs.loc[~adata.obs["control"], "dose"].round(2)) == {0.04, 0.12, 0.37, 1.11, 3.33, 10.0}
    assert 3 < float(np.median(adata.X)) < 15                 # level 3: log2 expression
    # the .gctx copy is text GCT with level-4 robust z-scores of the same wells
    values, _, columns = read_gct(PLATE.with_suffix(".gctx"))
    assert values.shape == (978, 377) and "zmad_ref" in columns.columns and abs(float(np.median(values))) < 1
    prepared, report = pf.prepare({"covariate_keys": ["cell_id"]}, PLATE, SHARED / "deepce_drugs_smiles.csv", {}, 0)
    assert report["n_drugs"] == 54 and report["drugs_without_smiles"] == ["BRD-U60236422"]
    assert report["drugs_per_split"] == {"train": 38, "test": 11, "val": 5}
