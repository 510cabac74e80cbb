"""DeepCE: atom graphs, learning a planted structure rule on held-out drugs, seeding, gene vectors,
padding masks and input errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import torch_threads

from genecompass.drug.molecules import (
    ATOM_ELEMENTS,
    ATOM_FEATURES,
    BOND_TYPES,
    atom_graph,
    morgan_fingerprints,
)
from genecompass.tasks.deepce.metrics import row_pearson
from genecompass.tasks.deepce.model import DeepCE, DeepceSettings

DRUGS = {
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "ibuprofen": "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
    "paracetamol": "CC(=O)Nc1ccc(O)cc1",
    "caffeine": "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
    "naproxen": "COc1ccc2cc(ccc2c1)C(C)C(=O)O",
    "metformin": "CN(C)C(=N)N=C(N)N",
    "diclofenac": "OC(=O)Cc1ccccc1Nc1c(Cl)cccc1Cl",
    "nicotine": "CN1CCC[C@H]1c1cccnc1",
    "lidocaine": "CCN(CC)CC(=O)Nc1c(C)cccc1C",
    "salbutamol": "CC(C)(C)NCC(O)c1ccc(O)c(CO)c1",
    "propranolol": "CC(C)NCC(O)COc1cccc2ccccc12",
    "fluoxetine": "CNCCC(Oc1ccc(cc1)C(F)(F)F)c1ccccc1",
    "sertraline": "CN[C@H]1CC[C@@H](c2ccc(Cl)c(Cl)c2)c2ccccc12",
    "diazepam": "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc12",
    "omeprazole": "COc1ccc2[nH]c(nc2c1)S(=O)Cc1ncc(C)c(OC)c1C",
    "atenolol": "CC(C)NCC(O)COc1ccc(CC(N)=O)cc1",
    "furosemide": "NS(=O)(=O)c1cc(C(=O)O)c(NCc2ccco2)cc1Cl",
    "hydrochlorothiazide": "NS(=O)(=O)c1cc2c(cc1Cl)NCNS2(=O)=O",
    "ciprofloxacin": "OC(=O)c1cn(C2CC2)c2cc(N3CCNCC3)c(F)cc2c1=O",
    "metronidazole": "Cc1ncc(n1CCO)[N+](=O)[O-]",
    "sulfamethoxazole": "Cc1cc(NS(=O)(=O)c2ccc(N)cc2)no1",
    "trimethoprim": "COc1cc(Cc2cnc(N)nc2N)cc(OC)c1OC",
    "chlorpromazine": "CN(C)CCCN1c2ccccc2Sc2ccc(Cl)cc12",
    "haloperidol": "OC1(CCN(CCCC(=O)c2ccc(F)cc2)CC1)c1ccc(Cl)cc1",
    "carbamazepine": "NC(=O)N1c2ccccc2C=Cc2ccccc12",
    "phenytoin": "O=C1NC(=O)C(N1)(c1ccccc1)c1ccccc1",
    "theophylline": "Cn1c2c(c(=O)n(C)c1=O)[nH]cn2",
    "warfarin": "CC(=O)CC(c1ccccc1)C1=C(O)c2ccccc2OC1=O",
    "tamoxifen": "CCC(=C(c1ccccc1)c1ccc(OCCN(C)C)cc1)c1ccccc1",
    "methotrexate": "CN(Cc1cnc2nc(N)nc(N)c2n1)c1ccc(cc1)C(=O)NC(CCC(=O)O)C(=O)O",
    "indomethacin": "COc1ccc2n(C(=O)c3ccc(Cl)cc3)c(C)c(CC(=O)O)c2c1",
    "ketoprofen": "CC(C(=O)O)c1cccc(c1)C(=O)c1ccccc1",
}
N_GENES, GENE_FEATURES = 40, 16
CELLS = ["A375", "MCF7"]
DOSES = {"1 uM": 0.5, "10 uM": 1.0}
# Small and quick, but the paper's architecture; a higher learning rate than the paper's 2e-4 for few epochs.
FAST = {"drug_dim": 32, "gene_dim": 32, "hidden_dim": 32, "cell_dim": 4, "dose_dim": 2, "lr": 1e-3}


def _plate(seed: int = 0):
    """Every drug x cell x dose; a profile is dose x (3 balanced Morgan bits, centred) @ W plus noise.

    Returns the table, the profiles, and the training, validation and held-out test drugs (20, 6, 6).
    """
    rng = np.random.default_rng(seed)
    names = list(DRUGS)
    bits = morgan_fingerprints([DRUGS[n] for n in names], names=names)
    frequency = bits.mean(0)
    planted = np.argsort(np.abs(frequency - 0.5), kind="stable")[:3]
    effect = (bits[:, planted] - frequency[planted]) @ rng.normal(size=(3, N_GENES))
    rows, profiles = [], []
    for i, drug in enumerate(names):
        for cell in CELLS:
            for dose, factor in DOSES.items():
                rows.append((drug, cell, dose))
                profiles.append(factor * effect[i] + 0.2 * rng.normal(size=N_GENES))
    order = list(rng.permutation(names))
    return (pd.DataFrame(rows, columns=["drug", "cell", "dose"]), np.asarray(profiles, np.float32),
            order[12:], order[6:12], order[:6])


def _model(gene_vectors: np.ndarray | None = None, seed: int = 0, gene_missing=None, **overrides) -> DeepCE:
    if gene_vectors is None:
        gene_vectors = np.random.default_rng(1).normal(size=(N_GENES, GENE_FEATURES))
    settings = DeepceSettings.from_config({**FAST, **overrides}, seed)
    return DeepCE(DRUGS, gene_vectors, CELLS, list(DOSES), settings, gene_missing)


def _rows(drugs: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"drug": drugs, "cell": CELLS[0], "dose": "10 uM"})


def test_atom_graph_ethanol_and_benzene():
    features, bonds = atom_graph("CCO")
    assert features.shape == (3, ATOM_FEATURES) and bonds.shape == (3, 4)
    assert features[:, ATOM_ELEMENTS.index("O")].tolist() == [0, 0, 1]
    assert features[:, -1].tolist() == [0, 0, 0]
    assert set(BOND_TYPES[k] for k in bonds[2]) == {"SINGLE"}
    features, bonds = atom_graph("c1ccccc1")
    assert features.shape == (6, ATOM_FEATURES) and bonds.shape == (3, 12)
    assert features[:, -1].tolist() == [1] * 6
    assert set(BOND_TYPES[k] for k in bonds[2]) == {"AROMATIC"}
    # Both directions of every bond, and each ring atom has two neighbours.
    assert {(a, b) for a, b in bonds[:2].T} == {(b, a) for a, b in bonds[:2].T}
    assert np.bincount(bonds[0]).tolist() == [2] * 6


def test_beats_mean_profile_baseline_on_held_out_drugs():
    table, profiles, train, val, test = _plate()
    subset = {name: table["drug"].isin(drugs).to_numpy() for name, drugs in
              {"train": train, "val": val, "test": test}.items()}
    with torch_threads(1):
        model = _model(epochs=60)
        history = model.fit(table[subset["train"]], profiles[subset["train"]],
                            table[subset["val"]], profiles[subset["val"]])
        predicted = model.predict(table[subset["test"]])
    assert [h["epoch"] for h in history] == list(range(1, 61))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    truth = profiles[subset["test"]]
    doses = table["dose"].to_numpy()
    baseline = np.vstack([profiles[subset["train"] & (doses == dose)].mean(0) for dose in doses[subset["test"]]])
    deepce, mean_profile = row_pearson(predicted, truth).mean(), row_pearson(baseline, truth).mean()
    assert deepce > mean_profile + 0.15 and deepce > 0.25, (deepce, mean_profile)
    # The kept weights are those of the best validation epoch.
    best = max(h["val_pearson"] for h in history)
    assert row_pearson(model.predict(table[subset["val"]]), profiles[subset["val"]]).mean() == pytest.approx(best)


def test_invalid_smiles_and_unknown_labels_raise():
    with pytest.raises(ValueError, match="broken"):
        atom_graph("C1CC((", "broken")
    with pytest.raises(ValueError, match="broken"):
        DeepCE({"ethanol": "CCO", "broken": "not a molecule"}, np.ones((3, 2)), CELLS, list(DOSES),
               DeepceSettings())
    model = _model()
    with pytest.raises(ValueError, match="unobtainium"):
        model.predict(_rows(["aspirin", "unobtainium"]))
    with pytest.raises(ValueError, match="HeLa"):
        model.predict(pd.DataFrame({"drug": ["aspirin"], "cell": ["HeLa"], "dose": ["10 uM"]}))
    with pytest.raises(ValueError, match="unknown setting"):
        DeepceSettings.from_config({"drug_dims": 8}, 0)


def test_same_seed_same_predictions():
    table, profiles, train, val, _ = _plate()
    rows = table["drug"].isin(train[:6]).to_numpy()
    predictions = []
    with torch_threads(1):
        for seed in (3, 3, 4):
            model = _model(seed=seed, epochs=2)
            model.fit(table[rows], profiles[rows], table[rows], profiles[rows])
            predictions.append(model.predict(table[rows]))
    assert np.array_equal(predictions[0], predictions[1])
    assert not np.allclose(predictions[0], predictions[2])


def test_gene_vectors_drive_the_gene_outputs():
    vectors = np.random.default_rng(1).normal(size=(N_GENES, GENE_FEATURES))
    permutation = np.random.default_rng(2).permutation(N_GENES)
    rows = _rows(["aspirin", "caffeine", "tamoxifen"])
    with torch_threads(1):
        plain = _model(vectors).predict(rows)
        permuted = _model(vectors[permutation]).predict(rows)
        # Missing genes use learned rows: their vectors are ignored.
        missing = np.zeros(N_GENES, bool)
        missing[:5] = True
        garbage = vectors.copy()
        garbage[:5] = np.nan
        flagged = _model(vectors, gene_missing=missing).predict(rows)
        flagged_garbage = _model(garbage, gene_missing=missing).predict(rows)
    assert not np.allclose(plain, permuted, atol=1e-3)
    # Genes have no parameters of their own: permuting the vectors permutes the outputs.
    np.testing.assert_allclose(permuted, plain[:, permutation], atol=1e-5)
    np.testing.assert_allclose(flagged, flagged_garbage, atol=1e-6)
    assert not np.allclose(flagged[:, :5], plain[:, :5], atol=1e-3)


def test_padding_atoms_are_masked():
    model = _model()
    with torch_threads(1):
        alone = model.predict(_rows(["aspirin"]))
        batched = model.predict(_rows(["aspirin", "methotrexate", "tamoxifen"]))
    np.testing.assert_allclose(batched[0], alone[0], atol=1e-5)
    assert not np.allclose(batched[1], alone[0], atol=1e-3)
