"""Tests of genecompass.io: reading h5ad, 10x h5 and 10x mtx count matrices."""

from __future__ import annotations

import gzip

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp
from anndata import AnnData

from genecompass.errors import InputError
from genecompass.genes import harmonize_gene_ids, read_gene_table
from genecompass.io import detect_format, read_counts

# A tiny experiment: 3 cells x 4 genes; the symbol DUP is carried by two genes.
COUNTS = np.array([[1, 0, 2, 0],
                   [0, 3, 0, 4],
                   [5, 0, 0, 6]], dtype=np.int32)
BARCODES = ["AAAC-1", "AAAG-1", "AAAT-1"]
GENE_IDS = ["ENSG00000000001", "ENSG00000000002", "ENSG00000000003", "ENSG00000000004"]
SYMBOLS = ["GAPDH", "DUP", "ACTB", "DUP"]


def write_10x_v3_h5(path, counts=COUNTS, gene_ids=GENE_IDS, symbols=SYMBOLS, genomes=None,
                    feature_types=None):
    """Cell Ranger 3 layout: /matrix holds the genes x cells matrix in CSC parts."""
    n_genes = counts.shape[1]
    by_gene = sp.csc_matrix(counts.T)  # genes x cells; CSC columns are cells
    genomes = genomes or ["GRCh38"] * n_genes
    feature_types = feature_types or ["Gene Expression"] * n_genes
    with h5py.File(path, "w") as handle:
        matrix = handle.create_group("matrix")
        matrix["barcodes"] = np.array(BARCODES[: counts.shape[0]], dtype="S")
        matrix["data"] = by_gene.data.astype(np.int32)
        matrix["indices"] = by_gene.indices.astype(np.int64)
        matrix["indptr"] = by_gene.indptr.astype(np.int64)
        matrix["shape"] = np.array(by_gene.shape, dtype=np.int32)
        features = matrix.create_group("features")
        features["id"] = np.array(gene_ids, dtype="S")
        features["name"] = np.array(symbols, dtype="S")
        features["feature_type"] = np.array(feature_types, dtype="S")
        features["genome"] = np.array(genomes, dtype="S")
        features["_all_tag_keys"] = np.array([b"genome"])
    return path


def write_10x_legacy_h5(path, genomes=("hg19",)):
    """Cell Ranger 1-2 layout: one group per genome."""
    by_gene = sp.csc_matrix(COUNTS.T)
    with h5py.File(path, "w") as handle:
        for genome in genomes:
            group = handle.create_group(genome)
            group["barcodes"] = np.array(BARCODES, dtype="S")
            group["data"] = by_gene.data.astype(np.int32)
            group["indices"] = by_gene.indices.astype(np.int64)
            group["indptr"] = by_gene.indptr.astype(np.int64)
            group["shape"] = np.array(by_gene.shape, dtype=np.int32)
            group["genes"] = np.array(GENE_IDS, dtype="S")
            group["gene_names"] = np.array(SYMBOLS, dtype="S")
    return path


def write_10x_mtx(folder, v3=True, gzip_matrix=None, gzip_tables=None):
    """A 10x mtx folder; v3 = features.tsv.gz etc., v2 = plain genes.tsv."""
    folder.mkdir(parents=True, exist_ok=True)
    gzip_matrix = v3 if gzip_matrix is None else gzip_matrix
    gzip_tables = v3 if gzip_tables is None else gzip_tables

    def open_out(name, compressed):
        return gzip.open(folder / (name + ".gz"), "wb") if compressed else open(folder / name, "wb")

    with open_out("matrix.mtx", gzip_matrix) as handle:
        scipy.io.mmwrite(handle, sp.coo_matrix(COUNTS.T), field="integer")
    features_name = "features.tsv" if v3 else "genes.tsv"
    rows = [f"{i}\t{s}\tGene Expression" if v3 else f"{i}\t{s}" for i, s in zip(GENE_IDS, SYMBOLS)]
    with open_out(features_name, gzip_tables) as handle:
        handle.write(("\n".join(rows) + "\n").encode())
    with open_out("barcodes.tsv", gzip_tables) as handle:
        handle.write(("\n".join(BARCODES) + "\n").encode())
    return folder


def assert_tiny_experiment(adata: AnnData):
    assert sp.isspmatrix_csr(adata.X)
    assert adata.shape == (3, 4)
    np.testing.assert_array_equal(adata.X.toarray(), COUNTS)
    assert list(adata.obs_names) == BARCODES
    assert list(adata.var_names) == SYMBOLS  # duplicates kept, not made unique
    assert list(adata.var["gene_ids"]) == GENE_IDS


def gene_table() -> pd.DataFrame:
    return pd.DataFrame({"symbol": ["GAPDH", "DUP1", "ACTB", "DUP2"], "biotype": ["protein_coding"] * 4},
                        index=pd.Index(GENE_IDS, name="ensembl_id"))


# ------------------------------------------------------------------ format detection


def test_detect_format(tmp_path):
    (tmp_path / "a.h5ad").write_bytes(b"")
    (tmp_path / "b.h5").write_bytes(b"")
    (tmp_path / "folder").mkdir()
    (tmp_path / "c.csv").write_text("x")
    assert detect_format(tmp_path / "a.h5ad") == "h5ad"
    assert detect_format(tmp_path / "b.h5") == "10x_h5"
    assert detect_format(tmp_path / "folder") == "10x_mtx"
    with pytest.raises(InputError) as info:
        detect_format(tmp_path / "c.csv")
    assert info.value.field == "format"
    with pytest.raises(InputError) as info:
        detect_format(tmp_path / "absent.h5ad")
    assert info.value.field == "path"


# ------------------------------------------------------------------ h5ad


@pytest.mark.parametrize("as_matrix", [np.asarray, sp.csc_matrix], ids=["dense", "csc"])
def test_read_h5ad_returns_csr(tmp_path, as_matrix):
    path = tmp_path / "s.h5ad"
    AnnData(X=as_matrix(COUNTS), obs=pd.DataFrame({"label": list("abc")}, index=BARCODES),
            var=pd.DataFrame(index=GENE_IDS)).write_h5ad(path)
    adata = read_counts(path)
    assert sp.isspmatrix_csr(adata.X) and adata.X.dtype == np.int32
    np.testing.assert_array_equal(adata.X.toarray(), COUNTS)
    assert adata.obs["label"].tolist() == ["a", "b", "c"]
    assert list(adata.var_names) == GENE_IDS


def test_read_corrupt_h5ad(tmp_path):
    path = tmp_path / "broken.h5ad"
    path.write_bytes(b"this is not an HDF5 file\x00\x01\x02" * 50)
    with pytest.raises(InputError) as info:
        read_counts(path, "h5ad")
    assert info.value.field == "path" and info.value.path == str(path)
    assert "re-download" in info.value.fix


def test_read_truncated_10x_h5(tmp_path):
    path = write_10x_v3_h5(tmp_path / "full.h5")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[:1500])
    with pytest.raises(InputError) as info:
        read_counts(truncated)
    assert info.value.field == "path"


def test_missing_path_and_unknown_format(tmp_path):
    with pytest.raises(InputError) as info:
        read_counts(tmp_path / "nothing.h5ad")
    assert info.value.field == "path"
    path = write_10x_v3_h5(tmp_path / "s.h5")
    with pytest.raises(InputError) as info:
        read_counts(path, "loom")
    assert info.value.field == "format" and "10x_mtx" in info.value.fix
    with pytest.raises(InputError) as info:
        read_counts(path, "10x_mtx")
    assert info.value.field == "format"


def test_h5ad_named_h5_is_a_format_error(tmp_path):
    path = tmp_path / "really_h5ad.h5"
    AnnData(X=sp.csr_matrix(COUNTS)).write_h5ad(path)
    with pytest.raises(InputError) as info:
        read_counts(path)
    assert info.value.field == "format" and "h5ad" in info.value.fix


def test_10x_h5_named_h5ad_is_a_format_error(tmp_path):
    path = write_10x_v3_h5(tmp_path / "mislabelled.h5ad")
    with pytest.raises(InputError) as info:
        read_counts(path)
    assert info.value.field == "format" and "10x_h5" in info.value.fix


# ------------------------------------------------------------------ 10x h5


def test_read_10x_v3_h5(tmp_path):
    adata = read_counts(write_10x_v3_h5(tmp_path / "s.h5"), "10x_h5", genome="")
    assert_tiny_experiment(adata)


def test_read_10x_v3_h5_drops_antibody_features(tmp_path):
    path = write_10x_v3_h5(tmp_path / "s.h5",
                           feature_types=["Gene Expression"] * 3 + ["Antibody Capture"])
    adata = read_counts(path)
    assert list(adata.var["gene_ids"]) == GENE_IDS[:3]
    np.testing.assert_array_equal(adata.X.toarray(), COUNTS[:, :3])


def test_read_10x_v3_h5_multi_genome(tmp_path):
    path = write_10x_v3_h5(tmp_path / "barnyard.h5", genomes=["GRCh38", "GRCh38", "mm10", "mm10"])
    with pytest.raises(InputError) as info:
        read_counts(path)
    assert info.value.field == "genome"
    assert "GRCh38" in info.value.problem and "mm10" in info.value.problem
    assert "genome" in info.value.fix and "sample sheet" in info.value.fix
    mouse = read_counts(path, genome="mm10")
    assert list(mouse.var["gene_ids"]) == GENE_IDS[2:]
    np.testing.assert_array_equal(mouse.X.toarray(), COUNTS[:, 2:])
    with pytest.raises(InputError) as info:
        read_counts(path, genome="hg19")
    assert info.value.field == "genome" and "mm10" in info.value.problem


def test_read_10x_legacy_h5(tmp_path):
    assert_tiny_experiment(read_counts(write_10x_legacy_h5(tmp_path / "v2.h5")))
    path = write_10x_legacy_h5(tmp_path / "two.h5", genomes=("hg19", "mm10"))
    with pytest.raises(InputError) as info:
        read_counts(path)
    assert info.value.field == "genome" and "hg19" in info.value.problem and "mm10" in info.value.problem
    assert_tiny_experiment(read_counts(path, genome="mm10"))


# ------------------------------------------------------------------ 10x mtx


@pytest.mark.parametrize(
    "v3, gzip_matrix, gzip_tables",
    [(True, True, True), (False, False, False), (True, False, False), (True, True, False)],
    ids=["v3_gz", "v2_plain", "v3_plain", "v3_mixed"],
)
def test_read_10x_mtx_layouts(tmp_path, v3, gzip_matrix, gzip_tables):
    folder = write_10x_mtx(tmp_path / "filtered", v3, gzip_matrix, gzip_tables)
    assert_tiny_experiment(read_counts(folder))


def test_read_10x_mtx_genome_subfolders(tmp_path):
    write_10x_mtx(tmp_path / "filtered_gene_bc_matrices" / "hg19", v3=False)
    assert_tiny_experiment(read_counts(tmp_path / "filtered_gene_bc_matrices", "10x_mtx"))
    write_10x_mtx(tmp_path / "filtered_gene_bc_matrices" / "mm10", v3=False)
    with pytest.raises(InputError) as info:
        read_counts(tmp_path / "filtered_gene_bc_matrices")
    assert info.value.field == "genome" and "['hg19', 'mm10']" in info.value.problem
    assert_tiny_experiment(read_counts(tmp_path / "filtered_gene_bc_matrices", genome="hg19"))


def test_read_10x_mtx_missing_files(tmp_path):
    folder = write_10x_mtx(tmp_path / "m")
    (folder / "barcodes.tsv.gz").unlink()
    with pytest.raises(InputError, match="barcodes"):
        read_counts(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="matrix.mtx"):
        read_counts(empty)


def test_read_10x_mtx_corrupt_matrix(tmp_path):
    folder = write_10x_mtx(tmp_path / "m")
    (folder / "matrix.mtx.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(InputError) as info:
        read_counts(folder)
    assert info.value.field == "path"


def test_read_then_harmonize_sums_duplicate_symbols_by_id(tmp_path):
    # Two genes share the symbol DUP but have their own IDs; two columns share
    # an ID once versions are stripped and must be summed.
    ids = ["ENSG00000000001.1", "ENSG00000000002.1", "ENSG00000000003.4", "ENSG00000000001.2"]
    adata = read_counts(write_10x_v3_h5(tmp_path / "s.h5", gene_ids=ids))
    out, report = harmonize_gene_ids(adata, gene_table(), "human", tmp_path / "s.h5")
    assert report["id_source"] == "gene_ids" and report["n_duplicates_summed"] == 1
    assert list(out.var_names) == GENE_IDS[:3]
    assert out.var["symbol"].tolist() == ["GAPDH", "DUP1", "ACTB"]
    expected = COUNTS[:, :3].copy()
    expected[:, 0] += COUNTS[:, 3]
    np.testing.assert_array_equal(out.X.toarray(), expected)


# ------------------------------------------------------------------ real data


@pytest.fixture(scope="module")
def human_genes(shared_data):
    return read_gene_table(shared_data / "references/genes/ensembl109_human_gene_info.csv.gz", "human")


@pytest.fixture(scope="module")
def mouse_genes(shared_data):
    return read_gene_table(shared_data / "references/orthologs/HGNC_AllianceHomology.rpt.gz", "mouse")


@pytest.mark.realdata
def test_real_scanpy_10x_cases(shared_data):
    cases = shared_data / "counts" / "scanpy_10x_cases"
    v3_h5 = read_counts(cases / "3.0.0" / "filtered_feature_bc_matrix.h5")
    v3_mtx = read_counts(cases / "3.0.0" / "filtered_feature_bc_matrix")
    assert v3_h5.shape == v3_mtx.shape == (1107, 507)
    assert (v3_h5.X != v3_mtx.X).nnz == 0
    assert list(v3_h5.var["gene_ids"]) == list(v3_mtx.var["gene_ids"])
    assert v3_h5.var["gene_ids"].str.startswith("ENSG").all()

    legacy_h5 = read_counts(cases / "1.2.0" / "filtered_gene_bc_matrices_h5.h5")
    legacy_mtx = read_counts(cases / "1.2.0" / "filtered_gene_bc_matrices", "10x_mtx")
    assert legacy_h5.shape == legacy_mtx.shape == (12, 343)
    assert (legacy_h5.X != legacy_mtx.X).nnz == 0

    with pytest.raises(InputError) as info:
        read_counts(cases / "1.2.0" / "multiple_genomes.h5")
    assert "another_genome" in info.value.problem and "hg19_chr21" in info.value.problem
    chosen = read_counts(cases / "1.2.0" / "multiple_genomes.h5", genome="hg19_chr21")
    assert chosen.shape == (12, 343) and list(chosen.var_names) == list(legacy_h5.var_names)


@pytest.mark.realdata
def test_real_legacy_10x_symbols_harmonize(shared_data, human_genes):
    # Cell Ranger 1.2 test files carry symbols in both columns (no Ensembl IDs).
    adata = read_counts(shared_data / "counts/scanpy_10x_cases/1.2.0/filtered_gene_bc_matrices_h5.h5")
    out, report = harmonize_gene_ids(adata, human_genes, "human", "legacy.h5")
    assert report["id_source"] == "symbols"
    assert report["n_mapped"] / report["n_input_genes"] > 0.75
    assert out.X.sum() == adata.X[:, np.isin(adata.var_names, out.var["symbol"])].sum()


@pytest.mark.realdata
@pytest.mark.parametrize("name, n_cells", [("GSM4339772_C144", 3716), ("GSM4339774_C146", 4111)])
def test_real_liao_balf_v3_h5(shared_data, human_genes, name, n_cells):
    path = shared_data / "counts" / "liao2020_balf_10x" / f"{name}_filtered_feature_bc_matrix.h5"
    adata = read_counts(path)
    assert adata.shape == (n_cells, 33_539)
    assert sp.isspmatrix_csr(adata.X)
    out, report = harmonize_gene_ids(adata, human_genes, "human", path)
    # All genes but the SARS-CoV-2 feature "nCoV" of the GRCh38_nCoV reference.
    assert report["unmapped"] == ["nCoV"]
    assert out.n_vars == 33_538 and report["n_duplicates_summed"] == 0
    assert out.X.sum() == adata.X.sum() - adata.X[:, list(adata.var_names).index("nCoV")].sum()


@pytest.mark.realdata
def test_real_baron_symbols_map(shared_data, human_genes, mouse_genes):
    folder = shared_data / "counts" / "baron_pancreas"
    human = read_counts(folder / "baron2016_pancreas_human.h5ad")
    assert human.shape == (2142, 20_125) and human.X.dtype == np.int32
    out, report = harmonize_gene_ids(human, human_genes, "human", "baron_human")
    fraction = report["n_mapped"] / report["n_input_genes"]
    print(f"Baron human: {report['n_mapped']}/{report['n_input_genes']} symbols mapped ({fraction:.1%}), "
          f"{report['n_ambiguous']} ambiguous, {report['n_unmapped']} unmapped")
    assert fraction > 0.85
    assert out.X.dtype == np.int32 and sp.isspmatrix_csr(out.X)
    assert out.obs.equals(human.obs)

    mouse = read_counts(folder / "baron2016_pancreas_mouse.h5ad")
    assert mouse.shape == (1886, 14_877)
    out, report = harmonize_gene_ids(mouse, mouse_genes, "mouse", "baron_mouse")
    fraction = report["n_mapped"] / report["n_input_genes"]
    print(f"Baron mouse: {report['n_mapped']}/{report['n_input_genes']} symbols mapped ({fraction:.1%}), "
          f"{report['n_ambiguous']} ambiguous, {report['n_unmapped']} unmapped")
    assert fraction > 0.9
    assert out.var.loc[out.var["symbol"] == "Ins1", "biotype"].tolist() == ["protein_coding"]

    # A human sample declared mouse (or the reverse) is refused.
    with pytest.raises(InputError) as info:
        harmonize_gene_ids(mouse, human_genes, "human", "baron_mouse")
    assert info.value.field == "species"


@pytest.mark.realdata
def test_real_baron_human_ambiguity_resolved_by_hgnc(shared_data, human_genes):
    hgnc = pd.read_csv(shared_data / "references/hgnc/hgnc_complete_set_2024-10.txt.gz", sep="\t",
                       usecols=["ensembl_gene_id"], dtype=str)["ensembl_gene_id"].dropna()
    human = read_counts(shared_data / "counts/baron_pancreas/baron2016_pancreas_human.h5ad")
    out, report = harmonize_gene_ids(human, human_genes, "human", preferred_ids=hgnc)
    assert report["n_mapped"] / report["n_input_genes"] > 0.9
    assert report["n_ambiguous"] < 10
    assert out.var.loc["ENSG00000206503", "symbol"] == "HLA-A"  # the primary-assembly copy


@pytest.mark.realdata
def test_real_mouse_10x_subset(shared_data, mouse_genes):
    adata = read_counts(shared_data / "counts/mouse_10x_subset/mouse_10x_10k_chr1_subset.h5ad")
    assert adata.shape == (10_000, 1_000)
    out, report = harmonize_gene_ids(adata, mouse_genes, "mouse", "mouse_10x")
    assert report["id_source"] == "gene_ids"
    assert report["n_unmapped"] == 0 and out.n_vars == 1_000
    assert out.var_names.str.startswith("ENSMUSG").all()
    with pytest.raises(InputError) as info:
        harmonize_gene_ids(adata, read_gene_table_human_stub(), "human", "mouse_10x")
    assert info.value.field == "species"


def read_gene_table_human_stub() -> pd.DataFrame:
    return pd.DataFrame({"symbol": ["GAPDH"], "biotype": ["protein_coding"]},
                        index=pd.Index(["ENSG00000111640"], name="ensembl_id"))
