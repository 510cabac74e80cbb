"""Homolog token dictionary: special tokens, policies, mapping, real BioMart counts."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from genecompass.dictionary import (
    MASK_TOKEN_ID,
    PAD_TOKEN_ID,
    SPECIES_TOKEN_IDS,
    build_dictionary,
    gene_to_token,
    read_dictionary,
    summarize,
    write_dictionary,
)
from genecompass.errors import InputError


def gene_table(rows):
    return pd.DataFrame(rows, columns=["ensembl_id", "symbol", "biotype"]).set_index("ensembl_id")


HUMAN = gene_table([
    ("ENSG00000000001", "ONE", "protein_coding"),     # one2one with mouse 1
    ("ENSG00000000002", "TWO", "protein_coding"),     # one2many: mouse 2a, 2b
    ("ENSG00000000003", "THREE", "lncRNA"),           # human only
    ("ENSG00000000004", "FOUR", "processed_pseudogene"),  # not core
    ("ENSG00000000005", "FIVE", "miRNA"),             # many2many
    ("ENSG00000000006", "SIX", "protein_coding"),     # one2one with a non-core mouse gene
])
MOUSE = gene_table([
    ("ENSMUSG00000000001", "One", "protein_coding"),
    ("ENSMUSG0000000002A", "Two", "protein_coding"),
    ("ENSMUSG0000000002B", "Two2", "protein_coding"),
    ("ENSMUSG00000000005", "Five", "miRNA"),
    ("ENSMUSG00000000006", "Six-ps", "processed_pseudogene"),
    ("ENSMUSG00000000007", "Seven", "protein_coding"),  # mouse only
])
ORTHOLOGS = pd.DataFrame([
    ("ENSG00000000001", "ONE", "ENSMUSG00000000001", "One", "ortholog_one2one", 1.0),
    ("ENSG00000000002", "TWO", "ENSMUSG0000000002A", "Two", "ortholog_one2many", 1.0),
    ("ENSG00000000002", "TWO", "ENSMUSG0000000002B", "Two2", "ortholog_one2many", 0.0),
    ("ENSG00000000005", "FIVE", "ENSMUSG00000000005", "Five", "ortholog_many2many", 1.0),
    ("ENSG00000000006", "SIX", "ENSMUSG00000000006", "Six-ps", "ortholog_one2one", 1.0),
], columns=["human_id", "human_symbol", "mouse_id", "mouse_symbol", "homology_type", "confidence"])


def test_special_tokens_come_first():
    table = build_dictionary(HUMAN, MOUSE, ORTHOLOGS)
    assert table["token"].tolist()[:4] == ["<pad>", "<mask>", "<human>", "<mouse>"]
    assert (PAD_TOKEN_ID, MASK_TOKEN_ID, SPECIES_TOKEN_IDS["human"], SPECIES_TOKEN_IDS["mouse"]) == (0, 1, 2, 3)
    assert table["token_id"].tolist() == list(range(len(table)))


def test_one2one_policy():
    table = build_dictionary(HUMAN, MOUSE, ORTHOLOGS, policy="one2one")
    by_class = table.groupby("token_class")["token"].apply(list).to_dict()
    assert by_class["homologous"] == ["ENSG00000000001"]
    # one2many and many2many genes, and genes whose partner is not core, keep their own IDs.
    assert by_class["human_only"] == ["ENSG00000000002", "ENSG00000000003", "ENSG00000000005",
                                      "ENSG00000000006"]
    assert by_class["mouse_only"] == sorted(["ENSMUSG0000000002A", "ENSMUSG0000000002B",
                                             "ENSMUSG00000000005", "ENSMUSG00000000007"])
    assert "ENSG00000000004" not in set(table["token"])  # pseudogene is not a core gene
    human = gene_to_token(table, "human")
    mouse = gene_to_token(table, "mouse")
    assert human["ENSG00000000001"] == mouse["ENSMUSG00000000001"]
    assert set(human.values()).isdisjoint({mouse["ENSMUSG00000000007"], mouse["ENSMUSG0000000002A"]})


def test_one2many_policy_shares_the_human_token():
    table = build_dictionary(HUMAN, MOUSE, ORTHOLOGS, policy="one2many")
    mouse = gene_to_token(table, "mouse")
    human = gene_to_token(table, "human")
    assert mouse["ENSMUSG0000000002A"] == mouse["ENSMUSG0000000002B"] == human["ENSG00000000002"]
    row = table.set_index("token").loc["ENSG00000000002"]
    assert row["mouse_ensembl_id"] == "ENSMUSG0000000002A;ENSMUSG0000000002B"
    assert row["mouse_symbol"] == "Two;Two2"
    # many2many still stays apart.
    assert mouse["ENSMUSG00000000005"] != human["ENSG00000000005"]
    summary = summarize(table)
    assert summary["n_homologous"] == 2 and summary["n_mouse_genes_on_shared_tokens"] == 3


def test_min_confidence_drops_low_confidence_pairs():
    table = build_dictionary(HUMAN, MOUSE, ORTHOLOGS, policy="one2many", min_confidence=0.5)
    mouse = gene_to_token(table, "mouse")
    human = gene_to_token(table, "human")
    assert mouse["ENSMUSG0000000002A"] == human["ENSG00000000002"]
    assert mouse["ENSMUSG0000000002B"] != human["ENSG00000000002"]


def test_round_trip_and_unknown_policy(tmp_path):
    table = build_dictionary(HUMAN, MOUSE, ORTHOLOGS)
    write_dictionary(table, tmp_path / "dict.tsv", tmp_path / "summary.json")
    again = read_dictionary(tmp_path / "dict.tsv")
    assert again["token"].tolist() == table["token"].tolist()
    assert json.loads((tmp_path / "summary.json").read_text())["n_gene_tokens"] == len(table) - 4
    with pytest.raises(InputError, match="homology_policy"):
        build_dictionary(HUMAN, MOUSE, ORTHOLOGS, policy="best")


@pytest.mark.realdata
def test_real_biomart_dictionary(shared_data):
    from genecompass.genes import read_gene_table, read_orthologs

    references = shared_data / "references"
    human = read_gene_table(references / "genes" / "ensembl109_human_gene_info.csv.gz", "human")
    mouse = read_gene_table(references / "orthologs" / "HGNC_AllianceHomology.rpt.gz", "mouse")
    orthologs = read_orthologs(references / "orthologs" / "ensembl_biomart_human_to_mouse.csv.gz")
    table = build_dictionary(human, mouse, orthologs)
    summary = summarize(table)
    print("real dictionary:", summary)
    # The BioMart export has 17,122 one-to-one pairs; restricted to core genes of
    # both tables nearly all remain (the paper's dictionary: 17,465 of 36,092).
    assert 15_000 < summary["n_homologous"] <= 17_122
    assert summary["n_gene_tokens"] > 40_000
    human_map, mouse_map = gene_to_token(table, "human"), gene_to_token(table, "mouse")
    # TP53 / Trp53 are one-to-one orthologs and must share a token.
    assert human_map["ENSG00000141510"] == mouse_map["ENSMUSG00000059552"]
