"""The demo DAG end to end: QC recovers the planted quality, the corpus is valid."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.workflow

SAMPLES = ["human_s1", "human_s2", "human_s3", "mouse_s1", "mouse_s2"]


@pytest.fixture(scope="module")
def truth(demo_run):
    return pd.read_csv(demo_run / "results/simulate/truth/cells.tsv", sep="\t")


@pytest.fixture(scope="module")
def dictionary(demo_run):
    return pd.read_csv(demo_run / "results/tokens/dictionary.tsv", sep="\t", keep_default_na=False)


@pytest.mark.parametrize("sample", SAMPLES)
def test_qc_keeps_exactly_the_planted_good_cells(demo_run, truth, sample):
    qc = ad.read_h5ad(demo_run / f"results/qc/{sample}.h5ad")
    planted = truth[truth["sample"] == sample]
    expected = set(planted.loc[planted["planted_quality"] == "ok", "barcode"])
    assert set(qc.obs_names) == expected
    assert qc.n_obs < len(planted)  # low-quality cells were planted and removed
    assert qc.X.dtype == np.int32
    assert set(qc.var["biotype"]) <= {"protein_coding", "lncRNA", "miRNA"}
    assert qc.var_names.str.startswith("ENSMUSG" if sample.startswith("mouse") else "ENSG").all()
    assert not qc.var_names.str.contains(r"\.").any()  # version suffixes stripped


def test_qc_summary_counts_every_removed_cell(demo_run, truth):
    summary = pd.read_csv(demo_run / "results/qc/summary.tsv", sep="\t").set_index("sample")
    for sample in SAMPLES:
        planted = truth[truth["sample"] == sample]["planted_quality"].value_counts()
        row = summary.loc[sample]
        assert row["cells_input"] == planted.sum()
        assert row["removed_min_genes"] == planted.get("low_genes", 0)
        assert row["removed_max_mito_fraction"] == planted.get("high_mito", 0)
        assert row["cells_kept"] == planted.get("ok", 0)


def test_symbol_sample_reports_unmapped_and_resolves_ambiguous_symbols(demo_run):
    report = json.loads((demo_run / "results/qc/human_s2.gene_ids.json").read_text())
    assert report["id_source"] == "symbols"
    assert report["n_unmapped"] >= 5
    # A symbol the gene table lists under two IDs is settled by HGNC's ID.
    genes = pd.read_csv(demo_run / "results/simulate/references/human_genes.tsv", sep="\t")
    shared = genes[genes["symbol"].duplicated(keep=False)]
    assert len(shared) >= 2
    hgnc = pd.read_csv(demo_run / "results/simulate/references/hgnc_gene_groups.tsv", sep="\t")
    kept = set(ad.read_h5ad(demo_run / "results/qc/human_s2.h5ad", backed="r").var_names)
    chosen = set(shared["ensembl_id"]) & set(hgnc["ensembl_gene_id"])
    assert len(chosen) == shared["symbol"].nunique() and chosen <= kept
    assert not (set(shared["ensembl_id"]) - chosen) & kept
    assert report["n_ambiguous"] == 0


def test_dictionary_shares_tokens_between_species(demo_run, dictionary):
    summary = json.loads((demo_run / "results/tokens/dictionary_summary.json").read_text())
    assert summary["n_homologous"] > 0 and summary["n_human_only"] > 0 and summary["n_mouse_only"] > 0
    homologous = dictionary[dictionary["token_class"] == "homologous"]
    assert homologous["token"].str.startswith("ENSG").all()
    assert homologous["mouse_ensembl_id"].str.startswith("ENSMUSG").all()


def test_corpus_tokens_are_valid_and_ranked(demo_run, dictionary):
    import datasets

    corpus = datasets.load_from_disk(str(demo_run / "results/corpus/dataset"))
    n_tokens = len(dictionary)
    total = 0
    truncated = 0
    species_tokens = {"human": set(), "mouse": set()}
    for split in ("train", "validation"):
        for row in corpus[split]:
            ids = np.asarray(row["input_ids"])
            values = np.asarray(row["values"])
            assert len(ids) == len(values) == row["length"] <= 512
            assert ids.min() >= 4 and ids.max() < n_tokens
            assert len(set(ids.tolist())) == len(ids)
            assert np.all(np.diff(values) <= 0)
            assert values[-1] > 0
            truncated += row["length"] == 512
            species_tokens[row["species"]].update(ids.tolist())
            total += 1
    kept = sum(ad.read_h5ad(demo_run / f"results/qc/{s}.h5ad", backed="r").n_obs for s in SAMPLES)
    assert total == kept
    assert truncated > 0  # the max_length cap is exercised on the demo
    shared = species_tokens["human"] & species_tokens["mouse"]
    homologous_ids = set(dictionary.loc[dictionary["token_class"] == "homologous", "token_id"])
    assert shared and shared <= homologous_ids
    summary = json.loads((demo_run / "results/corpus/summary.json").read_text())
    assert summary["n_train"] + summary["n_validation"] == kept
