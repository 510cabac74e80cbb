"""Tests of genecompass.references: downloads, TF networks, gene families, promoters."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_text

from genecompass.downloads import download_target, fetch, resolve_reference
from genecompass.errors import InputError
from genecompass.genes import read_gene_table, read_orthologs, symbols_to_ensembl
from genecompass.references import (
    extract_promoters,
    mouse_gene_groups,
    network_name,
    read_epd_promoters,
    read_fasta,
    read_gene_groups,
    read_network,
    read_networks,
    read_promoters_fasta,
    reverse_complement,
    write_promoters_fasta,
)

H = {name: f"ENSG{n:011d}" for n, name in enumerate(
    ["GATA1", "TAL1", "KLF1", "HBB", "HLA-A", "HLA-A_alt", "SPI1", "CEBPA", "MYC"], start=1)}
M = {name: f"ENSMUSG{n:011d}" for n, name in enumerate(
    ["Gata1", "Tal1", "Klf1", "Hbb-bs", "Spi1", "Cebpa", "Myc", "0610005C13Rik"], start=1)}



def human_table() -> pd.DataFrame:
    symbols = [name.replace("_alt", "") for name in H]  # two IDs share HLA-A
    return pd.DataFrame({"symbol": symbols, "biotype": "protein_coding"},
                        index=pd.Index(list(H.values()), name="ensembl_id"))


def mouse_table() -> pd.DataFrame:
    return pd.DataFrame({"symbol": list(M), "biotype": "protein_coding"},
                        index=pd.Index(list(M.values()), name="ensembl_id"))


def edges_of(net: pd.DataFrame) -> dict[tuple[str, str], int]:
    return {(s, t): int(sign) for s, t, sign in net[["source_symbol", "target_symbol", "sign"]].itertuples(index=False)}


# ---------------------------------------------------------------------------
# downloads
# ---------------------------------------------------------------------------


@pytest.fixture
def http_server(tmp_path, monkeypatch):
    """A real HTTP server on 127.0.0.1 serving tmp_path/served; yields (folder, base URL, request log)."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "served"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_fetch_good_checksum(http_server, tmp_path):
    root, base, _ = http_server
    payload = os.urandom(3 * (1 << 20) + 17)  # several read chunks
    (root / "data.bin").write_bytes(payload)
    dest = tmp_path / "cache" / "data.bin"
    result = fetch(f"{base}/data.bin", dest, sha256=hashlib.sha256(payload).hexdigest().upper())
    assert result == dest and dest.read_bytes() == payload
    assert leftovers(dest.parent) == ["data.bin"]


def test_fetch_bad_checksum_leaves_no_file(http_server, tmp_path):
    root, base, _ = http_server
    (root / "data.txt").write_text("the real content\n")
    dest = tmp_path / "cache" / "data.txt"
    wrong = "0" * 64
    with pytest.raises(InputError) as error:
        fetch(f"{base}/data.txt", dest, sha256=wrong)
    assert error.value.field == "sha256" and error.value.path == f"{base}/data.txt"
    actual = hashlib.sha256(b"the real content\n").hexdigest()
    assert wrong in str(error.value) and actual in str(error.value) and error.value.fix
    assert leftovers(dest.parent) == []
    # an older good copy survives a failed refresh
    dest.write_text("old\n")
    with pytest.raises(InputError):
        fetch(f"{base}/data.txt", dest, sha256=wrong)
    assert dest.read_text() == "old\n" and leftovers(dest.parent) == ["data.txt"]


def test_fetch_404_and_bad_inputs(http_server, tmp_path):
    _, base, _ = http_server
    dest = tmp_path / "cache" / "missing.txt"
    with pytest.raises(InputError, match="404") as error:
        fetch(f"{base}/missing.txt", dest)
    assert error.value.field == "url" and leftovers(dest.parent) == []
    with pytest.raises(InputError) as error:
        fetch(f"{base}/missing.txt", dest, sha256="not-a-digest")
    assert error.value.field == "sha256"
    with pytest.raises(InputError) as error:
        fetch("gopher2://example/file.txt", dest)
    assert error.value.field == "url"


def test_fetch_file_url(tmp_path):
    source = write_text(tmp_path / "source.tsv", "a\tb\n")
    dest = fetch(source.as_uri(), tmp_path / "out" / "copy.tsv",
                 sha256=hashlib.sha256(b"a\tb\n").hexdigest())
    assert dest.read_text() == "a\tb\n"
    with pytest.raises(InputError, match="download failed"):
        fetch((tmp_path / "absent.tsv").as_uri(), tmp_path / "out" / "absent.tsv")


def test_resolve_reference_local_and_download(http_server, tmp_path):
    root, base, requests = http_server
    local = write_text(tmp_path / "local.tsv", "x\n")
    assert resolve_reference(str(local), tmp_path / "cache") == local
    with pytest.raises(InputError) as error:
        resolve_reference(str(tmp_path / "nope.tsv"), tmp_path / "cache")
    assert error.value.field == "path"
    with pytest.raises(InputError, match="URL"):
        resolve_reference(f"{base}/x.tsv", tmp_path / "cache")

    (root / "grn.tsv.gz").write_bytes(b"payload")
    digest = hashlib.sha256(b"payload").hexdigest()
    entry = {"url": f"{base}/grn.tsv.gz?download=1", "sha256": digest}
    cache = tmp_path / "cache"
    assert download_target(entry, cache) == str(cache / "grn.tsv.gz")
    assert resolve_reference(entry, cache) == cache / "grn.tsv.gz"
    assert (cache / "grn.tsv.gz").read_bytes() == b"payload" and len(requests) == 1
    # a verified cached copy is reused without a request
    assert resolve_reference(entry, cache) == cache / "grn.tsv.gz" and len(requests) == 1
    # a corrupted cached copy is downloaded again
    (cache / "grn.tsv.gz").write_bytes(b"corrupt")
    assert resolve_reference(entry, cache).read_bytes() == b"payload" and len(requests) == 2

    # an existing local override is used offline; a missing one falls back to the URL
    offline = {"url": "http://127.0.0.1:9/unreachable.tsv", "sha256": digest, "path": str(local)}
    assert resolve_reference(offline, cache) == local
    assert download_target(offline, cache) == str(local)
    fallback = dict(entry, path=str(tmp_path / "no-local-copy.tsv.gz"))
    assert download_target(fallback, cache) == str(cache / "grn.tsv.gz")
    assert download_target(str(local), cache) == str(local)


def test_reference_entry_errors(tmp_path):
    with pytest.raises(InputError) as error:
        download_target({"url": "https://x/a.tsv", "md5": "abc"}, tmp_path)
    assert error.value.field == "md5"
    with pytest.raises(InputError) as error:
        download_target({"sha256": "0" * 64}, tmp_path)
    assert error.value.field == "url"
    with pytest.raises(InputError) as error:
        download_target({"url": "https://example.org/"}, tmp_path)
    assert error.value.field == "url"
    with pytest.raises(InputError):
        resolve_reference(42, tmp_path)
    with pytest.raises(InputError) as error:
        resolve_reference({"path": str(tmp_path / "absent.tsv")}, tmp_path)
    assert error.value.field == "path"


# ---------------------------------------------------------------------------
# symbols and networks
# ---------------------------------------------------------------------------


def test_symbols_to_ensembl():
    ids, report = symbols_to_ensembl(["GATA1", "gata1", "HLA-A", "NOPE", "", "TAL1", "GATA1"], human_table())
    assert list(ids) == [H["GATA1"], H["GATA1"], "", "", "", H["TAL1"], H["GATA1"]]
    assert report["n_symbols"] == 5 and report["n_mapped"] == 3
    assert report["ambiguous"] == ["HLA-A"] and report["unmapped"] == ["NOPE"]
    assert report["n_case_insensitive"] == 1
    ids, report = symbols_to_ensembl(["HLA.A"], human_table(), preferred_ids=[H["HLA-A"] + ".3"])
    assert list(ids) == [H["HLA-A"]] and report["n_dots_as_dashes"] == 1


def test_trrust_with_header(tmp_path):
    path = write_text(tmp_path / "trrust.tsv", (
        "TF\tgene_symbol\tinteraction\tposition\n"
        "GATA1\tKLF1\tActivation\t1\n"
        "GATA1\tKLF1\tActivation\t2\n"      # duplicate, same sign
        "TAL1\tHBB\tActivation\t3\n"
        "TAL1\tHBB\tRepression\t4\n"        # conflicting signs -> unknown
        "SPI1\tCEBPA\tUnknown\t5\n"
        "SPI1\tGATA1\tRepression\t6\n"
        "SPI1\tGATA1\tUnknown\t7\n"         # unknown does not cancel a known sign
        "MYC\tMYC\tActivation\t8\n"         # self-loop
        "NOTAGENE\tMYC\tActivation\t9\n"    # unmapped
        "MYC\tHLA-A\tActivation\t10\n"))    # ambiguous symbol
    net = read_network(path, human_table(), "human")
    assert list(net.columns) == ["source_id", "target_id", "source_symbol", "target_symbol", "sign"]
    assert net["sign"].dtype == np.int8
    assert edges_of(net) == {("GATA1", "KLF1"): 1, ("TAL1", "HBB"): 0, ("SPI1", "CEBPA"): 0,
                             ("SPI1", "GATA1"): -1}
    assert net.loc[0, "source_id"] == H["GATA1"] and net.loc[0, "target_id"] == H["KLF1"]
    report = net.attrs["report"]
    assert report["layout"] == "trrust" and report["n_input_edges"] == 10
    assert report["n_unmapped_edges"] == 2 and report["n_self_loops"] == 1 and report["n_duplicates"] == 3
    assert report["n_conflicting_signs"] == 1 and report["genes"]["unmapped"] == ["NOTAGENE"]
    assert report["genes"]["ambiguous"] == ["HLA-A"]
    # with preferred IDs (e.g. HGNC's primary-assembly IDs) the ambiguous symbol maps
    net = read_network(path, human_table(), "human", preferred_ids=[H["HLA-A"]])
    assert edges_of(net)[("MYC", "HLA-A")] == 1


def test_trrust_headerless_official_file(tmp_path):
    path = write_text(tmp_path / "trrust_rawdata.human.tsv",
                      "GATA1\tKLF1\tActivation\t1;2\nTAL1\tHBB\tRepression\t3\nSPI1\tCEBPA\tUnknown\t4\n")
    net = read_network(path, human_table(), "human")
    assert net.attrs["report"]["layout"] == "trrust"
    assert edges_of(net) == {("GATA1", "KLF1"): 1, ("TAL1", "HBB"): -1, ("SPI1", "CEBPA"): 0}


def test_dorothea_mor_gives_sign(tmp_path):
    path = write_text(tmp_path / "dorothea.tsv", "tf\tconfidence\ttarget\tmor\n"
                      "Gata1\tA\tKlf1\t1.0\nTal1\tB\tHbb-bs\t-1.0\nSpi1\tC\tCebpa\t0.5\nSpi1\tC\tMyc\t0\n")
    net = read_network(path, mouse_table(), "mouse")
    assert net.attrs["report"]["layout"] == "dorothea"
    assert edges_of(net) == {("Gata1", "Klf1"): 1, ("Tal1", "Hbb-bs"): -1, ("Spi1", "Cebpa"): 1,
                             ("Spi1", "Myc"): 0}


def test_generic_layouts(tmp_path):
    demo = write_text(tmp_path / "grn.tsv", "source\ttarget\tmode\nGATA1\tKLF1\tActivation\nTAL1\tHBB\tRepression\n")
    assert edges_of(read_network(demo, human_table(), "human")) == {("GATA1", "KLF1"): 1, ("TAL1", "HBB"): -1}
    remap = write_text(tmp_path / "remap.tsv.gz", "tf\ttarget\nGATA1\tKLF1\nSPI1\tCEBPA\n")
    net = read_network(remap, human_table(), "human")
    assert net.attrs["report"]["layout"] == "generic" and edges_of(net) == {("GATA1", "KLF1"): 0, ("SPI1", "CEBPA"): 0}
    signed = write_text(tmp_path / "signed.csv", "source,target,sign\nGATA1,KLF1,-1\nTAL1,HBB,+\nSPI1,CEBPA,odd\n")
    net = read_network(signed, human_table(), "human", layout="remap")
    assert edges_of(net) == {("GATA1", "KLF1"): -1, ("TAL1", "HBB"): 1, ("SPI1", "CEBPA"): 0}
    assert net.attrs["report"]["unrecognised_signs"] == ["odd"]


def test_ensembl_ids_used_as_they_are(tmp_path):
    unknown = "ENSG00000999999"
    path = write_text(tmp_path / "ids.tsv", f"source\ttarget\n{H['GATA1']}.4\t{H['KLF1']}\n{H['GATA1']}\t{unknown}\n"
                                           f"{H['GATA1']}\tHBB\n")
    net = read_network(path, human_table(), "human")
    assert list(net["target_id"]) == [H["KLF1"], unknown, H["HBB"]]
    assert set(net["source_id"]) == {H["GATA1"]} and net.attrs["report"]["n_duplicates"] == 0
    assert list(net["target_symbol"]) == ["KLF1", unknown, "HBB"]


def test_beeline_mouse_upper_case(tmp_path):
    path = write_text(tmp_path / "mESC-ChIP-seq-network.csv",
                      "Gene1,Gene2,Type\nGATA1,KLF1,+\nTAL1,HBB-BS,-\nSPI1,0610005C13RIK,+\nGATA1,GATA1,+\n")
    net = read_network(path, mouse_table(), "mouse")
    report = net.attrs["report"]
    assert report["layout"] == "beeline" and report["genes"]["n_case_insensitive"] == 6
    # official mouse symbols come back, not the upper-cased ones
    assert edges_of(net) == {("Gata1", "Klf1"): 1, ("Tal1", "Hbb-bs"): -1, ("Spi1", "0610005C13Rik"): 1}
    plain = write_text(tmp_path / "plain.csv", "Gene1,Gene2\nGATA1,KLF1\n")
    assert edges_of(read_network(plain, mouse_table(), "mouse")) == {("Gata1", "Klf1"): 0}


def test_network_errors(tmp_path):
    unknown = write_text(tmp_path / "weird.tsv", "regulator\tregulated\nGATA1\tKLF1\n")
    with pytest.raises(InputError) as error:
        read_network(unknown, human_table(), "human")
    assert error.value.field == "header" and "TRRUST" in error.value.fix and "BEELINE" in error.value.fix
    assert error.value.path == str(unknown)
    no_mor = write_text(tmp_path / "dorothea.tsv", "tf\tconfidence\ttarget\nGATA1\tA\tKLF1\n")
    with pytest.raises(InputError) as error:
        read_network(no_mor, human_table(), "human", layout="dorothea")
    assert error.value.field == "mor"
    with pytest.raises(InputError) as error:
        read_network(no_mor, human_table(), "human", layout="cytoscape")
    assert error.value.field == "layout"
    nothing = write_text(tmp_path / "nothing.tsv", "tf\ttarget\nFOO\tBAR\n")
    with pytest.raises(InputError, match="none of the 1 edges"):
        read_network(nothing, human_table(), "human")
    mouse_style = write_text(tmp_path / "mouse.tsv", "tf\ttarget\nGata1\tKlf1\nTal1\tHbb\n")
    with pytest.raises(InputError) as error:
        read_network(mouse_style, human_table(), "human")
    assert error.value.field == "species"
    mouse_ids = write_text(tmp_path / "ids.tsv", f"tf\ttarget\n{M['Gata1']}\t{M['Klf1']}\n")
    with pytest.raises(InputError) as error:
        read_network(mouse_ids, human_table(), "human")
    assert error.value.field == "species"
    with pytest.raises(InputError):
        read_network(tmp_path / "absent.tsv", human_table(), "human")
    with pytest.raises(InputError):
        read_network(write_text(tmp_path / "empty.tsv", "tf\ttarget\n"), human_table(), "human")


def test_read_networks_combines(tmp_path):
    a = write_text(tmp_path / "trrust_v2_human.tsv",
                   "TF\tgene_symbol\tinteraction\tposition\nGATA1\tKLF1\tActivation\t1\n")
    b = write_text(tmp_path / "remap.tsv.gz", "tf\ttarget\nGATA1\tKLF1\nSPI1\tCEBPA\n")
    combined = read_networks([a, {"path": str(b), "name": "chip"}], human_table(), "human")
    assert list(combined.columns) == ["network", "source_id", "target_id", "source_symbol", "target_symbol", "sign"]
    assert list(combined["network"]) == ["trrust_v2_human", "chip", "chip"]
    report = combined.attrs["report"]
    assert report["n_networks"] == 2 and report["n_edges"] == 3 and report["n_distinct_edges"] == 2
    assert set(report["networks"]) == {"trrust_v2_human", "chip"}
    by_name = read_networks({"x": a, "y": b}, human_table(), "human")
    assert by_name.groupby("network").size().to_dict() == {"x": 1, "y": 2}
    with pytest.raises(InputError) as error:
        read_networks([a, a], human_table(), "human")
    assert error.value.field == "network"
    assert network_name("/x/remap_chipseq_tf_targets_human.tsv.gz") == "remap_chipseq_tf_targets_human"


# ---------------------------------------------------------------------------
# gene families
# ---------------------------------------------------------------------------

HGNC_HEADER = "hgnc_id\tsymbol\tname\tgene_group\tgene_group_id\tensembl_gene_id\n"


def test_read_gene_groups(tmp_path):
    path = write_text(tmp_path / "hgnc.txt.gz", HGNC_HEADER + (
        f'HGNC:1\tGATA1\tg1\t"GATA zinc fingers|Erythroid TFs"\t"82|900"\t{H["GATA1"]}\n'
        f"HGNC:2\tKLF1\tk1\tErythroid TFs\t900\t{H['KLF1']}\n"
        "HGNC:3\tNOENS\tn\tErythroid TFs\t900\t\n"                  # no Ensembl ID: dropped
        f"HGNC:4\tMYC\tm\t\t\t{H['MYC']}\n"))                         # no group: dropped
    groups = read_gene_groups(path)
    assert list(groups.columns) == ["ensembl_id", "symbol", "group_id", "group_name"]
    assert sorted(map(tuple, groups.to_numpy().tolist())) == sorted([
        (H["GATA1"], "GATA1", "82", "GATA zinc fingers"),
        (H["GATA1"], "GATA1", "900", "Erythroid TFs"),
        (H["KLF1"], "KLF1", "900", "Erythroid TFs"),
    ])
    assert groups.attrs["report"] == {"n_groups": 2, "n_groups_with_pairs": 1, "n_genes": 2, "n_memberships": 3}


def test_gene_group_errors(tmp_path):
    missing = write_text(tmp_path / "custom.txt", "HGNC ID\tApproved symbol\tGroup name\nHGNC:1\tA\tB\n")
    with pytest.raises(InputError) as error:
        read_gene_groups(missing)
    assert error.value.field == "symbol" and "HGNC complete set" in error.value.fix
    uneven = write_text(tmp_path / "uneven.txt", HGNC_HEADER + f"HGNC:1\tGATA1\tg\tA|B\t1\t{H['GATA1']}\n")
    with pytest.raises(InputError) as error:
        read_gene_groups(uneven)
    assert error.value.field == "gene_group_id" and "GATA1" in error.value.problem


def test_mouse_gene_groups_through_orthologs():
    human = pd.DataFrame({
        "ensembl_id": [H["GATA1"], H["KLF1"], H["TAL1"], H["SPI1"], H["MYC"]],
        "symbol": ["GATA1", "KLF1", "TAL1", "SPI1", "MYC"],
        "group_id": ["1", "1", "2", "3", "4"],
        "group_name": ["A", "A", "B", "C", "D"],
    })
    orthologs = pd.DataFrame([
        (H["GATA1"], "GATA1", M["Gata1"], "Gata1", "ortholog_one2one", 1.0),
        (H["KLF1"], "KLF1", M["Klf1"], "Klf1", "ortholog_one2many", 1.0),    # one human -> two mouse
        (H["KLF1"], "KLF1", M["Hbb-bs"], "Hbb-bs", "ortholog_one2many", 0.0),
        (H["TAL1"], "TAL1", M["Tal1"], "Tal1", "ortholog_one2many", 1.0),    # two human -> one mouse
        (H["SPI1"], "SPI1", M["Tal1"], "Tal1", "ortholog_one2many", 1.0),
        (H["MYC"], "MYC", M["Myc"], "Myc", "ortholog_many2many", 1.0),       # excluded by default
    ], columns=["human_id", "human_symbol", "mouse_id", "mouse_symbol", "homology_type", "confidence"])
    mouse = mouse_gene_groups(human, orthologs)
    assert list(mouse.columns) == ["ensembl_id", "symbol", "group_id", "group_name"]
    assert sorted(zip(mouse["symbol"], mouse["group_id"])) == [
        ("Gata1", "1"), ("Hbb-bs", "1"), ("Klf1", "1"), ("Tal1", "2"), ("Tal1", "3")]
    assert mouse.attrs["report"]["n_groups"] == 3
    only_one2one = mouse_gene_groups(human, orthologs, homology_types=["ortholog_one2one"])
    assert list(only_one2one["symbol"]) == ["Gata1"]
    with pytest.raises(InputError):
        mouse_gene_groups(human, orthologs.drop(columns="homology_type"))


# ---------------------------------------------------------------------------
# FASTA and promoters
# ---------------------------------------------------------------------------


def test_read_fasta(tmp_path):
    path = write_text(tmp_path / "x.fa.gz", ">one first record\nacgt\nNNac\n\n>two\nGG\n>three desc\n\n")
    assert read_fasta(path) == {"one": "ACGTNNAC", "two": "GG", "three": ""}
    with pytest.raises(InputError, match="more than once"):
        read_fasta(write_text(tmp_path / "dup.fa", ">a\nAC\n>a\nGT\n"))
    with pytest.raises(InputError, match="before the first"):
        read_fasta(write_text(tmp_path / "bad.fa", "ACGT\n>a\nAC\n"))
    with pytest.raises(InputError, match="no FASTA record"):
        read_fasta(write_text(tmp_path / "empty.fa", "\n"))
    with pytest.raises(InputError) as error:
        read_fasta(tmp_path / "absent.fa")
    assert error.value.field == "path"


def test_promoter_fasta_round_trip(tmp_path):
    table = pd.DataFrame({"ensembl_id": [H["GATA1"], H["KLF1"], H["KLF1"]], "symbol": ["GATA1", "KLF1", ""],
                          "sequence": ["A" * 7, "ACGTACGTA", "GG"]})
    path = tmp_path / "promoters.fa"
    write_promoters_fasta(table, path, line_width=4)
    assert path.read_text() == (f">{H['GATA1']} GATA1\nAAAA\nAAA\n>{H['KLF1']} KLF1\nACGT\nACGT\nA\n"
                                f">{H['KLF1']}\nGG\n")
    back = read_promoters_fasta(path)
    pd.testing.assert_frame_equal(back, table)
    with pytest.raises(InputError, match="more than once"):
        read_fasta(path)


def test_read_epd_promoters(tmp_path):
    sequences = write_text(tmp_path / "seq.txt", "GATA1_1\tacgtACGT\nGATA1_2\tTTTTgggg\nKLF1_1\tCCCCAAAA\n"
                                                 "ORPHAN_1\tAAAA\n")
    links = write_text(tmp_path / "ens.txt", f"GATA1_1\t{H['GATA1']}\nGATA1_2\t{H['GATA1']}.2\nKLF1_1\t{H['KLF1']}\n"
                                             f"NOSEQ_1\t{H['MYC']}\n")
    table = read_epd_promoters(sequences, links)
    assert list(table.columns) == ["ensembl_id", "promoter_id", "sequence"]
    assert table.to_numpy().tolist() == [[H["GATA1"], "GATA1_1", "ACGTACGT"], [H["GATA1"], "GATA1_2", "TTTTGGGG"],
                                         [H["KLF1"], "KLF1_1", "CCCCAAAA"]]
    report = table.attrs["report"]
    assert report["n_genes"] == 2 and report["n_promoters"] == 3
    assert report["n_links_without_sequence"] == 1 and report["n_sequences_without_gene"] == 1
    # a header line is skipped; a FASTA sequence file works too
    with_header = write_text(tmp_path / "ens2.txt", f"promoter\tensembl\nKLF1_1\t{H['KLF1']}\n")
    fasta = write_text(tmp_path / "seq.fa", ">KLF1_1 EP12345\nccgg\nAA\n")
    assert read_epd_promoters(fasta, with_header).to_numpy().tolist() == [[H["KLF1"], "KLF1_1", "CCGGAA"]]
    with pytest.raises(InputError) as error:
        read_epd_promoters(sequences, sequences)
    assert error.value.field == "ensembl_id"


#                0         1
#                01234567890123456789
CHROMOSOME_1 = "ACGTACGGTTCAGCATGCAA"


def write_gtf(path: Path, chrom: str = "1") -> Path:
    def record(feature, start, end, strand, gene_id, name, extra=""):
        return (f"{chrom}\ttest\t{feature}\t{start}\t{end}\t.\t{strand}\t.\t"
                f'gene_id "{gene_id}"; gene_version "3"; gene_name "{name}";{extra}\n')

    lines = [
        "#!genome-build test\n",
        record("gene", 6, 15, "+", H["GATA1"] + ".3", "GATA1"),
        record("exon", 6, 9, "+", H["GATA1"] + ".3", "GATA1"),
        record("gene", 8, 12, "-", H["KLF1"], "KLF1"),
        record("gene", 2, 9, "+", H["TAL1"], "TAL1"),
        record("gene", 14, 19, "-", H["HBB"], "HBB"),
        # canonical transcripts move the TSS away from the gene's ends
        record("gene", 1, 20, "+", H["SPI1"], "SPI1"),
        record("transcript", 1, 20, "+", H["SPI1"], "SPI1", ' tag "basic";'),
        record("transcript", 11, 20, "+", H["SPI1"], "SPI1", ' tag "basic"; tag "Ensembl_canonical";'),
        record("gene", 3, 17, "-", H["CEBPA"], "CEBPA"),
        record("transcript", 3, 9, "-", H["CEBPA"], "CEBPA", ' tag "Ensembl_canonical";'),
    ]
    lines.append(f'2\ttest\tgene\t5\t9\t.\t+\t.\tgene_id "{H["MYC"]}"; gene_name "MYC";\n')  # chromosome not in FASTA
    return write_text(path, "".join(lines))


def test_extract_promoters_by_hand(tmp_path):
    genome = write_text(tmp_path / "genome.fa.gz",
                        ">3 no genes here\nGGGG\n>1 dna:chromosome\n" + CHROMOSOME_1[:8].lower() + "\n"
                        + CHROMOSOME_1[8:] + "\n")
    table = extract_promoters(genome, write_gtf(tmp_path / "genes.gtf"), upstream=3, downstream=4)
    assert list(table.columns) == ["ensembl_id", "symbol", "sequence"]
    got = dict(zip(table["symbol"], table["sequence"]))
    assert got == {
        "GATA1": "GTACGGT",   # + strand, TSS at base 6 (index 5): indexes 2..8
        "KLF1": "TGCTGAA",    # - strand, TSS at base 12 (index 11): rc of indexes 8..14 "TTCAGCA"
        "TAL1": "NNACGTA",    # + strand, TSS index 1: two bases before the chromosome start
        "HBB": "NNTTGCA",     # - strand, TSS index 18: rc of "TGCAA" + two bases past the end
        "SPI1": "GTTCAGC",    # canonical transcript starts at base 11 (index 10): indexes 7..13
        "CEBPA": "TGAACCG",   # canonical transcript ends at base 9 (index 8): rc of indexes 5..11 "CGGTTCA"
    }
    assert list(table["ensembl_id"])[:2] == [H["GATA1"], H["KLF1"]]  # GTF order, version stripped
    report = table.attrs["report"]
    assert report["n_missing_chromosome"] == 1 and report["missing_chromosomes"] == ["2"]
    assert report["n_canonical_tss"] == 2


def test_extract_promoters_default_window_and_ucsc_names(tmp_path):
    rng = np.random.default_rng(0)
    chrom = "".join(rng.choice(list("ACGT"), size=6000))
    lines = "\n".join(chrom[i:i + 70] for i in range(0, len(chrom), 70))
    genome = write_text(tmp_path / "genome.fa", f">chr1\n{lines}\n>chrM\nACGT\n")
    gtf = write_text(tmp_path / "genes.gtf", "".join(
        f'1\tx\tgene\t{start}\t{end}\t.\t{strand}\t.\tgene_id "{gene}"; gene_name "{name}";\n'
        for gene, name, start, end, strand in [
            (H["GATA1"], "GATA1", 1001, 1500, "+"),
            (H["KLF1"], "KLF1", 4000, 5000, "-"),
            (H["TAL1"], "TAL1", 100, 200, "-"),
            (H["HBB"], "HBB", 5900, 5990, "+"),
        ]))
    table = extract_promoters(genome, gtf)

    def rc(seq):
        return seq.translate(str.maketrans("ACGTN", "TGCAN"))[::-1]

    got = dict(zip(table["symbol"], table["sequence"]))
    assert {len(s) for s in got.values()} == {2500}
    assert got["GATA1"] == chrom[500:3000]
    assert got["KLF1"] == rc(chrom[3000:5500])  # TSS index 4999: 500 after it, 2000 up to it
    assert got["TAL1"] == rc("N" * 1800 + chrom[:700])
    assert got["HBB"] == chrom[5399:] + "N" * 1899
    assert reverse_complement("ACGTNRY") == "RYNACGT"


def test_extract_promoters_errors(tmp_path):
    genome = write_text(tmp_path / "genome.fa", ">chrUn\nACGT\n")
    with pytest.raises(InputError) as error:
        extract_promoters(genome, write_gtf(tmp_path / "genes.gtf"))
    assert error.value.field == "seqname"
    bad_gtf = write_text(tmp_path / "bad.gtf", "1\tx\tgene\t1\t5\n")
    with pytest.raises(InputError) as error:
        extract_promoters(genome, bad_gtf)
    assert error.value.field == "line"
    with pytest.raises(InputError):
        extract_promoters(genome, write_gtf(tmp_path / "genes2.gtf"), upstream=-1)


# ---------------------------------------------------------------------------
# the demo world's reference files
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_references(tmp_path_factory) -> Path:
    from genecompass.simulate.world import simulate_world

    world = tmp_path_factory.mktemp("world")
    simulate_world(world, 42)
    return world / "references"


def test_demo_references(demo_references):
    d = demo_references
    human = read_gene_table(d / "human_genes.tsv", "human")
    mouse = read_gene_table(d / "mouse_genes.tsv", "mouse")
    nets = {species: read_network(d / f"grn_{species}.tsv", table, species)
            for species, table in (("human", human), ("mouse", mouse))}
    for species, net in nets.items():
        raw = pd.read_csv(d / f"grn_{species}.tsv", sep="\t")
        report = net.attrs["report"]
        assert report["layout"] == "generic" and report["n_edges"] == len(raw) and report["fraction_mapped"] == 1.0
        expected = np.where(raw["mode"] == "Activation", 1, -1)
        assert (net["sign"].to_numpy() == expected).all()
        assert list(net["source_symbol"]) == list(raw["source"])
    groups = read_gene_groups(d / "hgnc_gene_groups.tsv")
    assert groups["ensembl_id"].isin(human.index).all() and groups.attrs["report"]["n_groups"] >= 25
    mouse_groups = mouse_gene_groups(groups, read_orthologs(d / "orthologs_biomart.csv"))
    assert mouse_groups["ensembl_id"].isin(mouse.index).all()
    assert 0.8 * groups["group_id"].nunique() <= mouse_groups["group_id"].nunique() <= groups["group_id"].nunique()
    promoters = read_fasta(d / "promoters_human.fa")
    assert list(promoters) == list(human.index) and {len(s) for s in promoters.values()} == {2500}


# ---------------------------------------------------------------------------
# real public files (../shared/data)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_tables(shared_data):
    refs = shared_data / "references"
    return {
        "human": read_gene_table(refs / "genes/ensembl109_human_gene_info.csv.gz", "human"),
        "mouse": read_gene_table(refs / "orthologs/HGNC_AllianceHomology.rpt.gz", "mouse"),
    }


def _print_network(name, net):
    r = net.attrs["report"]
    print(f"{name}: {r['n_mapped_edges']}/{r['n_input_edges']} edges mapped ({100 * r['fraction_mapped']:.1f}%), "
          f"{r['n_edges']} kept (+{r['n_activation']} -{r['n_repression']} ?{r['n_unknown_sign']}); "
          f"symbols unmapped {r['genes']['n_unmapped']}, ambiguous {r['genes']['n_ambiguous']}, "
          f"case-insensitive {r['genes']['n_case_insensitive']}")


@pytest.mark.realdata
def test_real_trrust(shared_data, real_tables):
    grn = shared_data / "references/grn"
    human = read_network(grn / "trrust_v2_human.tsv", real_tables["human"], "human")
    _print_network("TRRUST human", human)
    assert human.attrs["report"]["fraction_mapped"] > 0.90
    # RELA -> NFKBIA is listed as activation and as repression: conflicting, so unknown
    assert edges_of(human)[("RELA", "NFKBIA")] == 0
    hgnc = pd.read_csv(shared_data / "references/hgnc/hgnc_complete_set_2024-10.txt.gz", sep="\t",
                       usecols=["ensembl_gene_id"], dtype=str).dropna()["ensembl_gene_id"]
    preferred = read_network(grn / "trrust_v2_human.tsv", real_tables["human"], "human", preferred_ids=hgnc)
    _print_network("TRRUST human (HGNC IDs preferred)", preferred)
    assert preferred.attrs["report"]["fraction_mapped"] > 0.97
    mouse = read_network(grn / "trrust_v2_mouse.tsv", real_tables["mouse"], "mouse")
    _print_network("TRRUST mouse", mouse)
    assert mouse.attrs["report"]["fraction_mapped"] > 0.95


@pytest.mark.realdata
def test_real_dorothea_signs(shared_data, real_tables):
    grn = shared_data / "references/grn"
    for species, activated, repressed in (("human", ("AHR", "CYP1A1"), ("AR", "MUC1")),
                                          ("mouse", ("Ahr", "Cyp1a1"), ("Ar", "Muc1"))):
        path = grn / f"dorothea_{species}_ABC.tsv"
        net = read_network(path, real_tables[species], species)
        _print_network(f"DoRothEA {species}", net)
        raw = pd.read_csv(path, sep="\t")
        report = net.attrs["report"]
        assert report["layout"] == "dorothea" and report["fraction_mapped"] > 0.9
        assert report["n_unknown_sign"] == 0  # every mor is +1 or -1
        assert 0 < report["n_repression"] <= (raw["mor"] < 0).sum()
        edges = edges_of(net)
        assert edges[activated] == 1 and edges[repressed] == -1


@pytest.mark.realdata
def test_real_beeline_mouse_case_insensitive(shared_data, real_tables):
    paths = sorted((shared_data / "beeline/networks/mouse").glob("*.csv"))
    assert paths
    combined = read_networks(paths, real_tables["mouse"], "mouse")
    for name, r in combined.attrs["report"]["networks"].items():
        print(f"BEELINE {name}: {r['n_mapped_edges']}/{r['n_input_edges']} edges mapped "
              f"({100 * r['fraction_mapped']:.1f}%), {r['n_edges']} kept, "
              f"{r['genes']['n_case_insensitive']} symbols matched ignoring case")
        assert r["layout"] == "beeline" and r["fraction_mapped"] > 0.75
        assert r["genes"]["n_case_insensitive"] > 0.5 * r["genes"]["n_mapped"]
    chip = combined[combined["network"] == "Non-Specific-ChIP-seq-network"]
    assert ("Aatf", "Bax") in edges_of(chip)  # AATF,BAX in the file, official mouse case back


@pytest.mark.realdata
def test_real_remap(shared_data, real_tables):
    net = read_network(shared_data / "references/grn/remap_chipseq_tf_targets_human.tsv.gz",
                       real_tables["human"], "human")
    _print_network("ReMap human", net)
    assert net.attrs["report"]["layout"] == "generic" and (net["sign"] == 0).all()
    assert net.attrs["report"]["fraction_mapped"] > 0.75


@pytest.mark.realdata
def test_real_gene_families(shared_data):
    refs = shared_data / "references"
    human = read_gene_groups(refs / "hgnc/hgnc_complete_set_2024-10.txt.gz")
    mouse = mouse_gene_groups(human, read_orthologs(refs / "orthologs/ensembl_biomart_human_to_mouse.csv.gz"))
    h, m = human.attrs["report"], mouse.attrs["report"]
    print(f"HGNC families: human {h['n_groups']} groups ({h['n_groups_with_pairs']} with >= 2 genes), "
          f"{h['n_genes']} genes; mouse {m['n_groups']} groups ({m['n_groups_with_pairs']} with >= 2 genes), "
          f"{m['n_genes']} genes (paper: 1,645 human, 1,539 mouse)")
    assert abs(h["n_groups"] - 1673) <= 0.03 * 1673
    assert m["n_groups"] > 1400 and m["n_groups"] <= h["n_groups"]
    assert human["ensembl_id"].str.startswith("ENSG").all() and mouse["ensembl_id"].str.startswith("ENSMUSG").all()


@pytest.mark.realdata
def test_real_epd_promoters(shared_data):
    refs = shared_data / "references/promoters"
    table = read_epd_promoters(refs / "epd_human_core_promoters_sequence.txt",
                               refs / "epd_human_core_promoters_ensembl.txt")
    r = table.attrs["report"]
    print(f"EPD human: {r['n_promoters']} promoters for {r['n_genes']} genes "
          f"({r['n_sequences_without_gene']} sequences without an Ensembl gene)")
    assert r["n_genes"] > 15000
    assert table["sequence"].str.fullmatch(r"[ACGTN]+").all()
    assert table["sequence"].str.len().between(50, 70).all()  # EPD core promoters: -49..+10
