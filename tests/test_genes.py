"""Tests of genecompass.genes: gene tables, orthologs, identifier harmonisation."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData
from conftest import write_text

from genecompass.errors import InputError
from genecompass.genes import (
    CORE_BIOTYPES,
    harmonize_gene_ids,
    is_mitochondrial,
    looks_like_ensembl,
    read_gene_table,
    read_orthologs,
    strip_version,
    write_gene_table,
    write_orthologs,
)

H1, H2, H3, H4 = (f"ENSG{n:011d}" for n in (1, 2, 3, 4))
M1, M2, M3 = (f"ENSMUSG{n:011d}" for n in (11, 12, 13))



def human_table() -> pd.DataFrame:
    return pd.DataFrame(
        {"symbol": ["GAPDH", "MT-CO1", "HLA-A", "HLA-A"],
         "biotype": ["protein_coding", "protein_coding", "protein_coding", "protein_coding"]},
        index=pd.Index([H1, H2, H3, H4], name="ensembl_id"),
    )


def mouse_table() -> pd.DataFrame:
    return pd.DataFrame(
        {"symbol": ["Gapdh", "mt-Co1", "Sox2"], "biotype": ["protein_coding", "protein_coding", "lncRNA"]},
        index=pd.Index([M1, M2, M3], name="ensembl_id"),
    )


def make_adata(var_names, matrix, var=None) -> AnnData:
    matrix = sp.csr_matrix(np.asarray(matrix, dtype=np.int32))
    obs = pd.DataFrame({"donor": [f"d{i}" for i in range(matrix.shape[0])]},
                       index=[f"cell{i}" for i in range(matrix.shape[0])])
    var_frame = pd.DataFrame(var or {}, index=pd.Index(var_names))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not unique.*")  # duplicates are the point
        return AnnData(X=matrix, obs=obs, var=var_frame)


# ------------------------------------------------------------------ identifiers


def test_strip_version_scalar_and_vectorised():
    assert strip_version("ENSG00000141510.17") == "ENSG00000141510"
    assert strip_version("ENSMUSG00000059552") == "ENSMUSG00000059552"
    out = strip_version(pd.Index(["ENSG00000141510.17", "ENSMUSG00000059552.5", "AC000061.1", "TP53"]))
    assert list(out) == ["ENSG00000141510", "ENSMUSG00000059552", "AC000061.1", "TP53"]
    assert list(strip_version(["ENSG00000002586.20_PAR_Y"])) == ["ENSG00000002586"]


def test_looks_like_ensembl_by_species():
    ids = ["ENSG00000141510", "ENSG00000141510.17", "ENSMUSG00000059552", "TP53", "ENSG123", None]
    assert list(looks_like_ensembl(ids)) == [True, True, True, False, False, False]
    assert list(looks_like_ensembl(ids, "human")) == [True, True, False, False, False, False]
    assert list(looks_like_ensembl(ids, "mouse")) == [False, False, True, False, False, False]


def test_is_mitochondrial_any_case():
    mask = is_mitochondrial(["MT-CO1", "mt-Co1", "Mt-nd1", "MTOR", "GAPDH", None])
    assert mask.dtype == bool
    assert list(mask) == [True, True, True, False, False, False]


def test_core_biotypes():
    assert CORE_BIOTYPES == ("protein_coding", "lncRNA", "miRNA")


# ------------------------------------------------------------------ gene tables


def test_read_gene_table_own_tsv_strips_versions_and_keeps_first_duplicate(tmp_path):
    path = write_text(tmp_path / "genes.tsv.gz",
                      "ensembl_id\tsymbol\tbiotype\n"
                      f"{H1}.3\tGAPDH\tprotein_coding\n"
                      f"{H2}\tMT-CO1\tprotein_coding\n"
                      f"{H1}.4\tGAPDH_DUP\tlncRNA\n")
    table = read_gene_table(path, "human")
    assert table.index.name == "ensembl_id"
    assert list(table.index) == [H1, H2]
    assert list(table.columns) == ["symbol", "biotype"]
    assert table.loc[H1, "symbol"] == "GAPDH"
    assert table.loc[H1, "biotype"] == "protein_coding"


def test_read_gene_table_ensembl_csv(tmp_path):
    path = write_text(tmp_path / "info.csv",
                      "ensembl_id,gene_name,gene_type\n"
                      f"{H1},GAPDH,protein_coding\n"
                      f"{H2},,lncRNA\n"
                      f"{H3},MIR21,miRNA\n")
    table = read_gene_table(path, "human")
    assert table.loc[H3, "biotype"] == "miRNA"
    assert table.loc[H2, "symbol"] == ""
    assert len(table) == 3


def test_read_gene_table_mgi_report_maps_feature_types(tmp_path):
    header = "MGI Accession ID\tMarker Symbol\tMarker Name\tFeature Type\tEnsembl Gene ID\tHGNC ID"
    rows = [
        ("MGI:1", "Gapdh", "x", "protein coding gene", M1),
        ("MGI:2", "Malat1", "x", "lncRNA gene", M2),
        ("MGI:3", "Airn", "x", "antisense lncRNA gene", M3),
        ("MGI:4", "Linc1", "x", "lincRNA gene", "ENSMUSG00000000014"),
        ("MGI:5", "Mir21a", "x", "miRNA gene", "ENSMUSG00000000015"),
        ("MGI:6", "Snord1", "x", "snoRNA gene", "ENSMUSG00000000016"),
        ("MGI:7", "Hpm", "x", "heritable phenotypic marker", "ENSMUSG00000000017"),
        ("MGI:8", "Nc1", "x", "unclassified non-coding RNA gene", "ENSMUSG00000000018"),
        ("MGI:9", "NoId", "x", "protein coding gene", "null"),
        ("MGI:10", "Empty", "x", "protein coding gene", ""),
    ]
    # The real report ends every data row with a stray tab.
    text = header + "\n" + "".join("\t".join(r) + "\tnull\t\n" for r in rows)
    table = read_gene_table(write_text(tmp_path / "mgi.rpt.gz", text), "mouse")
    assert len(table) == 8  # the rows with Ensembl ID "null" / empty are dropped
    assert table.loc[M1, "symbol"] == "Gapdh"
    assert table["biotype"].tolist() == [
        "protein_coding", "lncRNA", "lncRNA", "lncRNA", "miRNA", "snoRNA",
        "heritable_phenotypic_marker", "unclassified_non_coding_RNA",
    ]


def test_read_gene_table_unknown_layout(tmp_path):
    path = write_text(tmp_path / "weird.tsv", "gene\tname\nA\tB\n")
    with pytest.raises(InputError) as info:
        read_gene_table(path, "human")
    assert str(path) in str(info.value)
    assert "Ensembl gene-info CSV" in info.value.fix and "MGI marker report" in info.value.fix


def test_read_gene_table_missing_column_named(tmp_path):
    path = write_text(tmp_path / "genes.tsv", f"ensembl_id\tsymbol\n{H1}\tGAPDH\n")
    with pytest.raises(InputError) as info:
        read_gene_table(path, "human")
    assert info.value.field == "biotype"
    assert "gene table TSV" in info.value.fix


def test_read_gene_table_wrong_species(tmp_path):
    path = write_text(tmp_path / "genes.tsv",
                      f"ensembl_id\tsymbol\tbiotype\n{M1}\tGapdh\tprotein_coding\n{M2}\tmt-Co1\tprotein_coding\n")
    with pytest.raises(InputError, match="mouse prefix ENSMUSG"):
        read_gene_table(path, "human")
    assert len(read_gene_table(path, "mouse")) == 2


def test_read_gene_table_missing_file(tmp_path):
    with pytest.raises(InputError) as info:
        read_gene_table(tmp_path / "absent.tsv", "human")
    assert info.value.field == "path"


# ------------------------------------------------------------------ orthologs

HUMAN_TO_MOUSE = (
    'Gene stable ID,Gene name,Mouse gene name,Mouse gene stable ID,Mouse homology type,'
    '"Mouse orthology confidence [0 low, 1 high]",Mouse Gene-order conservation score\n'
    f"{H1}.2,GAPDH,Gapdh,{M1},ortholog_one2one,1,100\n"
    f"{H2},MT-CO1,,,,,\n"
    f"{H3},HLA-A,H2-K1,{M2},ortholog_many2many,0,\n"
    f"{H3},HLA-A,H2-D1,{M3},ortholog_many2many,,\n"
)
MOUSE_TO_HUMAN = (
    'Gene stable ID,Gene name,Human gene name,Human gene stable ID,Human homology type,'
    '"Human orthology confidence [0 low, 1 high]",Human Gene-order conservation score\n'
    f"{M1},Gapdh,GAPDH,{H1},ortholog_one2one,1,100\n"
    f"{M2},H2-K1,HLA-A,{H3},ortholog_many2many,0,\n"
    f"{M3},H2-D1,HLA-A,{H3},ortholog_many2many,,\n"
    "ENSMUSG00000000099,Xist,,,,,\n"
)
ORTHOLOG_COLUMNS = ["human_id", "human_symbol", "mouse_id", "mouse_symbol", "homology_type", "confidence"]


@pytest.mark.parametrize("text", [HUMAN_TO_MOUSE, MOUSE_TO_HUMAN], ids=["human_to_mouse", "mouse_to_human"])
def test_read_orthologs_both_directions(tmp_path, text):
    pairs = read_orthologs(write_text(tmp_path / "orthologs.csv.gz", text))
    assert list(pairs.columns) == ORTHOLOG_COLUMNS
    pairs = pairs.sort_values(["human_id", "mouse_id"]).reset_index(drop=True)
    assert list(zip(pairs.human_id, pairs.mouse_id)) == [(H1, M1), (H3, M2), (H3, M3)]
    assert pairs.loc[0, "human_symbol"] == "GAPDH" and pairs.loc[0, "mouse_symbol"] == "Gapdh"
    assert pairs.homology_type.tolist() == ["ortholog_one2one", "ortholog_many2many", "ortholog_many2many"]
    assert pairs.confidence.dtype == float
    assert pairs.confidence.iloc[:2].tolist() == [1.0, 0.0]
    assert np.isnan(pairs.confidence.iloc[2])


def test_read_orthologs_without_confidence_column(tmp_path):
    text = ("Gene stable ID,Gene name,Mouse gene stable ID,Mouse gene name,Mouse homology type\n"
            f"{H1},GAPDH,{M1},Gapdh,ortholog_one2one\n")
    pairs = read_orthologs(write_text(tmp_path / "o.csv", text))
    assert len(pairs) == 1 and np.isnan(pairs.confidence.iloc[0])


def test_read_orthologs_missing_columns(tmp_path):
    text = f"Gene stable ID,Gene name,Mouse gene stable ID\n{H1},GAPDH,{M1}\n"
    with pytest.raises(InputError) as info:
        read_orthologs(write_text(tmp_path / "o.csv", text))
    assert info.value.field == "Mouse homology type"
    with pytest.raises(InputError) as info:
        read_orthologs(write_text(tmp_path / "p.csv", "a,b\n1,2\n"))
    assert "Mouse gene stable ID" in info.value.problem


def test_write_gene_table_round_trip(tmp_path):
    table = human_table()
    table.loc["ENSG00000000009", ["symbol", "biotype"]] = ["", "lncRNA"]
    write_gene_table(table, tmp_path / "out" / "human_genes.tsv")
    assert (tmp_path / "out" / "human_genes.tsv").read_text().splitlines()[0] == "ensembl_id\tsymbol\tbiotype"
    back = read_gene_table(tmp_path / "out" / "human_genes.tsv", "human")
    pd.testing.assert_frame_equal(back, table)


def test_write_orthologs_round_trip(tmp_path):
    pairs = read_orthologs(write_text(tmp_path / "o.csv", HUMAN_TO_MOUSE))
    write_orthologs(pairs, tmp_path / "orthologs.tsv")
    back = read_orthologs(tmp_path / "orthologs.tsv")
    pd.testing.assert_frame_equal(back, pairs)
    assert np.isnan(back.confidence.iloc[2])


# ------------------------------------------------------------------ harmonisation


def test_harmonize_ensembl_var_names_sums_duplicates_keeping_int_dtype():
    adata = make_adata([f"{H1}.1", f"{H2}.7", f"{H1}.2", "ENSG00000000099", M1],
                       [[1, 2, 3, 4, 5],
                        [0, 1, 0, 7, 0],
                        [6, 0, 0, 0, 9]])
    out, report = harmonize_gene_ids(adata, human_table(), "human", "sample.h5ad")
    assert list(out.var_names) == [H1, H2, "ENSG00000000099"]
    assert sp.isspmatrix_csr(out.X) and out.X.dtype == np.int32
    np.testing.assert_array_equal(out.X.toarray(), [[4, 2, 4], [0, 1, 7], [6, 0, 0]])
    assert out.var["symbol"].tolist() == ["GAPDH", "MT-CO1", ""]
    assert out.var["biotype"].tolist() == ["protein_coding", "protein_coding", "unknown"]
    assert out.obs.equals(adata.obs)
    assert report["id_source"] == "var_names"
    assert report["n_input_genes"] == 5
    assert report["n_mapped"] == 4 and report["n_unmapped"] == 1 and report["unmapped"] == [M1]
    assert report["n_duplicates_summed"] == 1 and report["n_output_genes"] == 3
    assert report["not_in_gene_table"] == ["ENSG00000000099"]


def test_harmonize_prefers_gene_ids_and_keeps_found_symbol():
    adata = make_adata(["GAPDH", "NEWGENE", "GAPDH"], [[1, 2, 3]],
                       var={"gene_ids": [H1, "ENSG00000000099", H1]})
    out, report = harmonize_gene_ids(adata, human_table(), "human")
    assert report["id_source"] == "gene_ids"
    assert list(out.var_names) == [H1, "ENSG00000000099"]
    assert out.var.loc["ENSG00000000099", "symbol"] == "NEWGENE"
    np.testing.assert_array_equal(out.X.toarray(), [[4, 2]])


def test_harmonize_symbols_exact_case_insensitive_ambiguous_unmapped():
    table = mouse_table()
    table.loc["ENSMUSG00000000014"] = ["SOX2", "protein_coding"]  # differs from Sox2 only in case
    adata = make_adata(["GAPDH", "Gapdh", "SOX2", "MT-CO1", "Nope", "Sox2"],
                       [[1, 10, 100, 1000, 5, 7]])
    out, report = harmonize_gene_ids(adata, table, "mouse", "beeline.csv")
    # GAPDH (case-insensitive) and Gapdh (exact) are one gene; SOX2 matches "SOX2"
    # exactly, Sox2 matches "Sox2" exactly; MT-CO1 -> mt-Co1 ignoring case.
    assert list(out.var_names) == [M1, "ENSMUSG00000000014", M2, M3]
    np.testing.assert_array_equal(out.X.toarray(), [[11, 100, 1000, 7]])
    assert out.var["symbol"].tolist() == ["Gapdh", "SOX2", "mt-Co1", "Sox2"]
    assert report["id_source"] == "symbols"
    assert report["n_case_insensitive"] == 2
    assert report["unmapped"] == ["Nope"] and report["n_ambiguous"] == 0
    assert report["n_duplicates_summed"] == 1

    # Case-folded, "sox2" now matches two Ensembl IDs: ambiguous, dropped.
    out, report = harmonize_gene_ids(make_adata(["sox2", "Gapdh"], [[3, 4]]), table, "mouse")
    assert report["ambiguous"] == ["sox2"] and report["n_ambiguous"] == 1
    assert list(out.var_names) == [M1]


def test_harmonize_symbols_written_with_dots_by_r():
    table = human_table()
    table.loc["ENSG00000000005"] = ["NKX2-1", "protein_coding"]
    table.loc["ENSG00000000006"] = ["AC000061.1", "lncRNA"]
    adata = make_adata(["NKX2.1", "AC000061.1", "HLA.A", "FOO.1"], [[1, 2, 3, 4]])
    out, report = harmonize_gene_ids(adata, table, "human")
    assert list(out.var_names) == ["ENSG00000000005", "ENSG00000000006"]
    assert report["n_dots_as_dashes"] == 1
    assert report["ambiguous"] == ["HLA.A"] and report["unmapped"] == ["FOO.1"]


def test_harmonize_ambiguous_symbol_dropped_unless_preferred():
    adata = make_adata(["HLA-A", "GAPDH"], [[5, 6]])
    out, report = harmonize_gene_ids(adata, human_table(), "human")
    assert report["ambiguous"] == ["HLA-A"] and list(out.var_names) == [H1]
    assert report["n_unmapped"] == 0
    out, report = harmonize_gene_ids(adata, human_table(), "human", preferred_ids=[H4 + ".5", H1])
    assert report["n_ambiguous"] == 0
    assert list(out.var_names) == [H4, H1]
    np.testing.assert_array_equal(out.X.toarray(), [[5, 6]])


def test_harmonize_wrong_species_ensembl_ids():
    adata = make_adata([M1, M2, H1], [[1, 2, 3]])
    with pytest.raises(InputError) as info:
        harmonize_gene_ids(adata, human_table(), "human", "s.h5ad")
    assert info.value.field == "species" and info.value.path == "s.h5ad"
    assert "sample sheet" in info.value.fix


def test_harmonize_mouse_style_symbols_in_human_sample():
    table = human_table()
    table.loc[H4, "symbol"] = "SOX2"
    adata = make_adata(["Gapdh", "Sox2", "GAPDH"], [[1, 2, 3]])
    with pytest.raises(InputError) as info:
        harmonize_gene_ids(adata, table, "human", "s.h5ad")
    assert info.value.field == "species"


def test_harmonize_gene_table_of_other_species():
    with pytest.raises(InputError, match="gene table"):
        harmonize_gene_ids(make_adata(["Gapdh"], [[1]]), human_table(), "mouse")


def test_harmonize_nothing_maps():
    with pytest.raises(InputError) as info:
        harmonize_gene_ids(make_adata(["foo", "bar"], [[1, 2]]), human_table(), "human", "x.h5ad")
    assert "none of the 2" in info.value.problem


def test_harmonize_never_densifies(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the count matrix was densified")

    adata = make_adata([H1, H2, H1], [[1, 2, 3], [4, 5, 6]])
    for cls in (sp.csr_matrix, sp.csc_matrix, sp.coo_matrix):
        monkeypatch.setattr(cls, "toarray", refuse)
        monkeypatch.setattr(cls, "todense", refuse)
    out, _ = harmonize_gene_ids(adata, human_table(), "human")
    monkeypatch.undo()
    assert sp.isspmatrix_csr(out.X)
    np.testing.assert_array_equal(out.X.toarray(), [[4, 2], [10, 5]])


def test_harmonize_dense_float_input():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not unique.*")
        adata = AnnData(X=np.array([[1.5, 2.0, 0.5]], dtype=np.float32),
                        var=pd.DataFrame(index=["GAPDH", "MT-CO1", "GAPDH"]))
    out, report = harmonize_gene_ids(adata, human_table(), "human")
    assert sp.isspmatrix_csr(out.X) and out.X.dtype == np.float32
    np.testing.assert_allclose(out.X.toarray(), [[2.0, 2.0]])
    assert report["n_duplicates_summed"] == 1


# ------------------------------------------------------------------ real data


@pytest.fixture(scope="module")
def real_tables(shared_data):
    refs = shared_data / "references"
    human = read_gene_table(refs / "genes" / "ensembl109_human_gene_info.csv.gz", "human")
    mouse = read_gene_table(refs / "orthologs" / "HGNC_AllianceHomology.rpt.gz", "mouse")
    return human, mouse


@pytest.mark.realdata
def test_real_gene_tables(real_tables, shared_data):
    human, mouse = real_tables
    assert len(human) == 69_299
    assert human.loc["ENSG00000141510", "symbol"] == "TP53"
    assert human.loc["ENSG00000141510", "biotype"] == "protein_coding"
    assert set(CORE_BIOTYPES) <= set(human["biotype"])
    assert looks_like_ensembl(mouse.index, "mouse").all()
    assert len(mouse) > 50_000
    assert mouse.loc[mouse["symbol"] == "Gapdh", "biotype"].tolist() == ["protein_coding"]
    assert set(CORE_BIOTYPES) <= set(mouse["biotype"])
    assert is_mitochondrial(human["symbol"]).sum() == 37  # the 37 genes of the mitochondrial genome
    with pytest.raises(InputError):
        read_gene_table(shared_data / "references/orthologs/HGNC_AllianceHomology.rpt.gz", "human")


@pytest.mark.realdata
def test_real_orthologs_both_directions_agree(shared_data, tmp_path):
    folder = shared_data / "references" / "orthologs"
    forward = read_orthologs(folder / "ensembl_biomart_human_to_mouse.csv.gz")
    backward = read_orthologs(folder / "ensembl_biomart_mouse_to_human.csv.gz")
    assert len(forward) == len(backward) == 26_360
    assert (forward.homology_type == "ortholog_one2one").sum() == 17_122
    key = ["human_id", "mouse_id"]
    merged = forward.merge(backward, on=key, suffixes=("_f", "_b"))
    assert len(merged) == len(forward)
    assert (merged.homology_type_f == merged.homology_type_b).all()
    assert looks_like_ensembl(forward.human_id, "human").all()
    assert looks_like_ensembl(forward.mouse_id, "mouse").all()
    write_orthologs(forward, tmp_path / "orthologs.tsv")
    pd.testing.assert_frame_equal(read_orthologs(tmp_path / "orthologs.tsv"), forward)
    tp53 = forward[forward.human_symbol == "TP53"]
    assert tp53.mouse_id.tolist() == ["ENSMUSG00000059552"] and tp53.mouse_symbol.tolist() == ["Trp53"]
    assert tp53.confidence.tolist() == [1.0]
