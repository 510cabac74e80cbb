"""The knowledge stage of the demo DAG, and reference downloads through Snakemake."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, run_workflow

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def quality(demo_run):
    table = pd.read_csv(demo_run / "results/knowledge/quality.tsv", sep="\t")
    return table.set_index(["kind", "species", "check"])["auc"]


@pytest.mark.parametrize("species", ["human", "mouse"])
def test_planted_knowledge_is_recovered(quality, species):
    # Thresholds sit well above chance (0.5); an embedding of shuffled pairs fails them.
    assert quality["family", species, "heldout"] > 0.85
    assert quality["grn", species, "direct"] > 0.65
    assert quality["coexpression", species, "heldout"] > 0.6
    # The planted family motifs are there (k-mer profiles find them); the brief
    # CPU-trained promoter BERT recovers less of them than plain k-mer counts.
    assert quality["promoter", species, "family_pairs_kmer_baseline"] > 0.6
    assert quality["promoter", species, "family_pairs"] > 0.53


def test_knowledge_file_is_aligned_to_the_dictionary(demo_run):
    from genecompass.dictionary import read_dictionary
    from genecompass.knowledge.assemble import KINDS, load_knowledge
    from genecompass.knowledge.gene2vec import load_gene_vectors

    dictionary = read_dictionary(demo_run / "results/tokens/dictionary.tsv")
    knowledge = load_knowledge(demo_run / "results/knowledge/knowledge.safetensors", dictionary)
    assert set(KINDS) <= set(knowledge.matrices)
    for kind in KINDS:
        matrix, mask = knowledge.matrices[kind], knowledge.masks[kind]
        assert matrix.shape == (len(dictionary), 32)
        assert not mask[:4].any()  # special tokens carry no knowledge
        assert mask.sum() > 100, kind
        assert np.all(matrix[~mask] == 0)
    # A homologous token carries the human gene's GRN vector.
    human = load_gene_vectors(demo_run / "results/knowledge/grn_human.safetensors")
    homologous = dictionary[(dictionary["token_class"] == "homologous")
                            & dictionary["human_ensembl_id"].isin(human.ids)].iloc[0]
    row = human.row(homologous["human_ensembl_id"])
    assert np.allclose(knowledge.matrices["grn"][homologous["token_id"]], human.vectors[row])
    coverage = pd.read_csv(demo_run / "results/knowledge/coverage.tsv", sep="\t")
    assert set(coverage["kind"]) == set(KINDS)


@pytest.fixture
def http_folder(tmp_path):
    """A folder served over HTTP on the loopback interface."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _config_with_downloaded_orthologs(tmp_path, url, sha256):
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["samples"] = str(ROOT / "config/samples.tsv")
    config["references"]["orthologs"] = {"url": url, "sha256": sha256}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("good_checksum", [True, False])
def test_reference_download_rule(demo_run, http_folder, tmp_path, good_checksum):
    folder, base_url = http_folder
    source = demo_run / "results/simulate/references/orthologs_biomart.csv"
    shutil.copy(source, folder / "orthologs_biomart.csv")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    if not good_checksum:
        digest = "0" * 64
    config = _config_with_downloaded_orthologs(tmp_path, f"{base_url}/orthologs_biomart.csv", digest)
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = run_workflow(workdir, "results/references/orthologs.tsv", extra=("--configfile", str(config)))
    downloaded = workdir / "resources/downloads/orthologs_biomart.csv"
    if good_checksum:
        assert result.returncode == 0, result.stderr[-3000:]
        assert downloaded.read_bytes() == source.read_bytes()
        pairs = pd.read_csv(workdir / "results/references/orthologs.tsv", sep="\t")
        assert len(pairs) > 900
    else:
        assert result.returncode != 0
        assert "sha256" in result.stderr
        assert not downloaded.exists()
        assert not (workdir / "results/references/orthologs.tsv").exists()
