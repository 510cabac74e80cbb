"""Real files that are fine: counts in .raw or a layer, identifiers in a var column, renamed genes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData

from genecompass.errors import InputError
from genecompass.genes import harmonize_gene_ids, read_gene_table
from genecompass.io import integer_count_sources, read_counts
from genecompass.qc import QCParams, qc_sample
from genecompass.references import hgnc_ensembl_ids, hgnc_symbol_routes

GENES = {f"ENSG{i:011d}": symbol for i, symbol in enumerate(
    ["ATP5F1E", "CXCL8", "SEPTIN7", "GAPDH", "ACTB", "RACK1", "ELOB", "MT-CO1"], start=1)}
IDS = list(GENES)

# HGNC complete-set layout: ATP5E / IL8 / SEPT7 previous symbols; GNB2L1 the previous symbol of two
# genes (ambiguous); TCEB2 an alias; ACTB listed as a previous symbol of CXCL8 but it is current.
HGNC = pd.DataFrame({
    "hgnc_id": [f"HGNC:{i}" for i in range(1, 9)], "symbol": list(GENES.values()),
    "prev_symbol": ["ATP5E", '"IL8|ACTB"', "SEPT7", "GNB2L1", "", "GNB2L1", "", ""],
    "alias_symbol": ["", "", "", "", "", "", "TCEB2", ""],
    "ensembl_gene_id": IDS,
})


def write_hgnc(tmp_path, frame=HGNC):
    path = tmp_path / "hgnc_complete_set.txt"
    frame.to_csv(path, sep="\t", index=False, quoting=3)
    return path


def gene_table():
    return pd.DataFrame({"symbol": list(GENES.values()), "biotype": "protein_coding"},
                        index=pd.Index(IDS, name="ensembl_id"))


def test_hgnc_routes_keep_only_names_of_one_gene_that_are_no_current_symbol(tmp_path):
    routes = hgnc_symbol_routes(write_hgnc(tmp_path))
    table = {(row.symbol, row.route): row.ensembl_id for row in routes.itertuples()}
    assert table == {("ATP5E", "previous"): IDS[0], ("IL8", "previous"): IDS[1],
                     ("SEPT7", "previous"): IDS[2], ("TCEB2", "alias"): IDS[6]}
    no_history = write_hgnc(tmp_path, HGNC.drop(columns=["prev_symbol", "alias_symbol"]))
    assert hgnc_symbol_routes(no_history).empty


def test_old_symbols_map_through_previous_then_alias_with_umi_shares(tmp_path):
    symbols = ["ATP5E", "il8", "SEPT7", "GNB2L1", "TCEB2", "ACTB", "NOT_A_GENE"]
    umis = np.array([[10, 20, 30, 5, 15, 15, 5]])
    adata = AnnData(X=sp.csr_matrix(umis.astype(np.int32)), var=pd.DataFrame(index=symbols))
    routes = hgnc_symbol_routes(write_hgnc(tmp_path))
    before_adata, before = harmonize_gene_ids(adata, gene_table(), "human")
    out, report = harmonize_gene_ids(adata, gene_table(), "human", symbol_routes=routes)
    assert before["umi_share_lost"] == pytest.approx(85 / 100)
    assert report["routes"] == {
        "previous": {"n_genes": 3, "umi_share": pytest.approx(0.60)},     # ATP5E, il8 (case), SEPT7
        "unmapped": {"n_genes": 2, "umi_share": pytest.approx(0.10)},     # GNB2L1 (two genes), NOT_A_GENE
        "alias": {"n_genes": 1, "umi_share": pytest.approx(0.15)},
        "current": {"n_genes": 1, "umi_share": pytest.approx(0.15)},
    }
    assert report["umi_share_lost"] == pytest.approx(0.10)
    assert report["n_previous_symbol"] == 3 and report["n_alias_symbol"] == 1
    assert set(report["unmapped"]) == {"GNB2L1", "NOT_A_GENE"}
    assert dict(zip(out.var["symbol"], np.asarray(out.X.sum(axis=0)).ravel())) == {
        "ATP5F1E": 10, "CXCL8": 20, "SEPTIN7": 30, "ELOB": 15, "ACTB": 15}
    assert before_adata.n_vars == 1


@pytest.mark.realdata
def test_real_baron_human_loses_at_most_4_percent_of_umis_and_no_unique_previous_symbol(shared_data):
    hgnc = shared_data / "references/hgnc/hgnc_complete_set_2024-10.txt.gz"
    genes = read_gene_table(shared_data / "references/genes/ensembl109_human_gene_info.csv.gz", "human")
    routes, preferred = hgnc_symbol_routes(hgnc), hgnc_ensembl_ids(hgnc)
    adata = read_counts(shared_data / "counts/baron_pancreas/baron2016_pancreas_human.h5ad")
    _, before = harmonize_gene_ids(adata, genes, "human", preferred_ids=preferred)
    _, after = harmonize_gene_ids(adata, genes, "human", preferred_ids=preferred, symbol_routes=routes)
    assert before["umi_share_lost"] > 0.02                   # measured 3.0% without the routes
    assert after["umi_share_lost"] <= 0.04 and after["umi_share_lost"] < before["umi_share_lost"] / 10
    previous = set(routes.loc[routes["route"] == "previous", "symbol"].str.upper())
    lost = [s for s in after["unmapped"] if s.upper() in previous]
    assert not lost and after["n_previous_symbol"] > 500
    assert {"AARS", "ARNTL"} <= set(adata.var_names) and not {"AARS", "ARNTL"} & set(after["unmapped"])


def cellxgene_file(tmp_path, name="cellxgene.h5ad"):
    """CELLxGENE's layout: log-normalised X, counts in .raw.X and layers['counts'], Ensembl IDs in the
    index, symbols in var['feature_name']."""
    rng = np.random.default_rng(0)
    counts = rng.poisson(3.0, size=(60, len(IDS))).astype(np.float32)
    counts[:, IDS.index("ENSG00000000008")] = rng.poisson(0.2, size=60)   # a little mitochondrial
    adata = AnnData(X=sp.csr_matrix(counts), obs=pd.DataFrame(index=[f"c{i}" for i in range(60)]),
                    var=pd.DataFrame({"feature_name": list(GENES.values())}, index=IDS))
    adata.layers["counts"] = adata.X.copy()
    adata.raw = adata.copy()
    adata.X = sp.csr_matrix(np.log1p(counts / counts.sum(1, keepdims=True) * 1e4))
    adata.write_h5ad(tmp_path / name)
    return tmp_path / name, counts


def test_counts_from_raw_or_a_layer_and_genes_from_a_var_column(tmp_path):
    path, counts = cellxgene_file(tmp_path)
    for source in ("raw", "layers/counts"):
        adata = read_counts(path, "h5ad", counts=source)
        np.testing.assert_array_equal(adata.X.toarray(), counts)
        assert list(adata.var_names) == IDS and list(adata.var["feature_name"]) == list(GENES.values())
    symbols = read_counts(path, "h5ad", counts="raw", gene_column="feature_name")
    assert list(symbols.var_names) == list(GENES.values())
    assert integer_count_sources(read_counts(path, "h5ad")) == ["raw", "layers/counts"]
    for counts_value, field, message in (("layers/spliced", "counts", "no layer 'spliced'"),
                                         ("obsm/X", "counts", "unknown value")):
        with pytest.raises(InputError) as error:
            read_counts(path, "h5ad", counts=counts_value)
        assert error.value.field == field and message in str(error.value)
    with pytest.raises(InputError, match="gene_column.*'symbol' is not a var column"):
        read_counts(path, "h5ad", gene_column="symbol")


def qc(tmp_path, path, tables, **kwargs):
    out = tmp_path / "qc"
    out.mkdir(exist_ok=True)
    params = QCParams.from_dict({"min_genes": 1, "min_coding_genes": 1, "max_mito_fraction": 0.9,
                                 "max_gene_sd": 10})
    return qc_sample(path, "h5ad", None, "human", "own", tables, params, out / "own.h5ad", out / "f.tsv",
                     out / "ids.json", out / "qc.png", **kwargs)


def test_normalised_x_names_the_sheet_value_and_the_plain_row_goes_through_qc(tmp_path):
    path, counts = cellxgene_file(tmp_path)
    tables = tmp_path / "genes.tsv"
    gene_table().assign(biotype="protein_coding").rename_axis("ensembl_id").reset_index().to_csv(
        tables, sep="\t", index=False)
    with pytest.raises(InputError) as error:
        qc(tmp_path, path, tables)
    assert "set the column counts of sample 'own' in the sample sheet to raw" in str(error.value)
    assert not (tmp_path / "qc" / "own.h5ad").exists()
    result = qc(tmp_path, path, tables, counts="raw", gene_column="feature_name")
    assert result.adata.n_obs == 60 and set(result.adata.var_names) == set(IDS)
    assert result.adata.X.sum() == counts.sum()
