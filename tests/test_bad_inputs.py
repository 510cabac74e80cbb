"""Bad inputs, end to end: each gives a clear error (file, field, fix), a non-zero exit and no partial output.

The workflow cases run the real ``snakemake`` on a tiny self-made world in a
temporary folder (a 30-gene table per species, 12-cell samples), targeting
only the outputs of the bad inputs: one run with ``--keep-going`` covers every
bad data file, and one run per sample-sheet or config error (those stop the
workflow while it is parsed). The fine-tuning label cases run at the library
level. docs/bad_inputs.md lists every case and the test that covers it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml
from conftest import snakemake_command

from genecompass.errors import InputError
from genecompass.simulate import world as simulate

ROOT = Path(__file__).resolve().parents[1]
# The duplicate-barcode sample is written on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Observation names are not unique")

# ------------------------------------------------------------------ a tiny world

HUMAN_SYMBOLS = ["GAPDH", "ACTB", "CD3E", "CD19", "MS4A1", "LYZ", "NKG7", "GNLY", "CD14", "FCGR3A",
                 "PTPRC", "B2M", "MALAT1", "NEAT1", "MIR21", "IL7R", "CCR7", "S100A8", "S100A9", "HBB",
                 "CD8A", "CD4", "FOXP3", "KLRD1", "PPBP", "PF4", "CST3", "FCER1A", "MT-CO1", "MT-ND1"]
MOUSE_SYMBOLS = [s.capitalize() if not s.startswith("MT-") else "mt-" + s[3:].capitalize() for s in HUMAN_SYMBOLS]
N_GENES = len(HUMAN_SYMBOLS)
HUMAN_IDS = [f"ENSG{10_000 + i:011d}" for i in range(N_GENES)]
MOUSE_IDS = [f"ENSMUSG{20_000 + i:011d}" for i in range(N_GENES)]
BIOTYPES = ["lncRNA" if s in ("MALAT1", "NEAT1") else "miRNA" if s == "MIR21" else "protein_coding"
            for s in HUMAN_SYMBOLS]
N_CELLS = 12
QC = {"min_genes": 5, "min_coding_genes": 2, "max_mito_fraction": 0.5, "max_gene_sd": 3.0, "min_cells": 4,
      "core_biotypes": ["protein_coding", "lncRNA", "miRNA"], "allow_non_raw": False, "small_sample": "error"}


def counts(seed: int = 0) -> np.ndarray:
    """Raw integer counts, cells x genes, every cell passing the QC above."""
    return np.random.default_rng(seed).poisson(3.0, size=(N_CELLS, N_GENES)).astype(np.int32)


def barcodes(n: int = N_CELLS) -> list[str]:
    return [f"AAACCTG{i:04d}-1" for i in range(n)]


def write_h5ad(path: Path, X, var_names=HUMAN_IDS, obs_names=None) -> Path:
    obs = pd.DataFrame(index=obs_names or barcodes(X.shape[0]))
    adata = ad.AnnData(X=sp.csr_matrix(X), obs=obs, var=pd.DataFrame(index=list(var_names)))
    adata.write_h5ad(path)
    return path


def write_10x_h5(path: Path, X, gene_ids=HUMAN_IDS, symbols=HUMAN_SYMBOLS) -> Path:
    """Cell Ranger 3 layout, written by the simulator's own writer."""
    simulate.write_10x_h5(path, sp.csr_matrix(np.asarray(X)), barcodes(X.shape[0]), gene_ids, symbols, "GRCh38")
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def write_gene_table(path: Path, ids, symbols) -> Path:
    pd.DataFrame({"ensembl_id": ids, "symbol": symbols, "biotype": BIOTYPES}).to_csv(path, sep="\t", index=False)
    return path


def write_hgnc(path: Path) -> Path:
    pd.DataFrame({"hgnc_id": [f"HGNC:{i}" for i in range(N_GENES)], "symbol": HUMAN_SYMBOLS,
                  "gene_group": "Demo group", "gene_group_id": "1", "ensembl_gene_id": HUMAN_IDS}
                 ).to_csv(path, sep="\t", index=False)
    return path


def write_orthologs(path: Path) -> Path:
    pd.DataFrame({"Gene stable ID": HUMAN_IDS, "Gene name": HUMAN_SYMBOLS, "Mouse gene stable ID": MOUSE_IDS,
                  "Mouse gene name": MOUSE_SYMBOLS, "Mouse homology type": "ortholog_one2one",
                  "Mouse orthology confidence [0 low, 1 high]": 1}).to_csv(path, index=False)
    return path


def make_world(root: Path) -> dict:
    """Reference files of both species and one good human sample under ``root``; returns their paths."""
    refs = root / "refs"
    refs.mkdir(parents=True)
    world = {
        "human_genes": write_gene_table(refs / "human_genes.tsv", HUMAN_IDS, HUMAN_SYMBOLS),
        "mouse_genes": write_gene_table(refs / "mouse_genes.tsv", MOUSE_IDS, MOUSE_SYMBOLS),
        "gene_groups": write_hgnc(refs / "hgnc.tsv"),
        "orthologs": write_orthologs(refs / "orthologs_biomart.csv"),
    }
    (root / "data").mkdir()
    world["good"] = write_h5ad(root / "data" / "good.h5ad", counts())
    return world


def write_config(root: Path, world: dict, sheet: Path, **overrides) -> Path:
    """The demo config pointed at the tiny world, tasks emptied (they name the demo's samples)."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["samples"] = str(sheet)
    references = config["references"]
    for key in ("human_genes", "mouse_genes", "gene_groups", "orthologs"):
        references[key] = str(world[key])
    references["cache_dir"] = "resources/downloads"
    config["qc"] = dict(QC)
    config["tasks"]["came"]["pairs"] = []
    config["tasks"]["annotation"]["datasets"] = []
    config["tasks"]["grn"]["datasets"] = []
    for dotted, value in overrides.items():
        *parents, last = dotted.split("__")
        node = config
        for key in parents:
            node = node[key]
        node[last] = value
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_sheet(path: Path, rows: list[dict], columns=("sample", "species", "path", "format", "genome")) -> Path:
    frame = pd.DataFrame(rows)
    for column in columns:
        if column not in frame:
            frame[column] = ""
    frame[list(columns)].to_csv(path, sep="\t", index=False)
    return path


def snakemake(workdir: Path, config: Path, *targets: str, keep_going: bool = False):
    command = snakemake_command(workdir, configfiles=(config,), samples=None, cores=2,
                                extra=(*(["--keep-going"] if keep_going else []), "--", *targets))
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


def leftovers(workdir: Path) -> list[str]:
    """Half-written files anywhere under results/ (atomic_output's .<name>.tmp-<pid> names)."""
    return sorted(str(p.relative_to(workdir)) for p in (workdir / "results").rglob("*") if ".tmp" in p.name)


def output_text(result) -> str:
    return result.stdout + result.stderr


def error_line(result, needle: str) -> str:
    """The one-line ``ERROR: <file>: field ...`` a failed job prints (genecompass.utils.logged_to)."""
    lines = [line for line in output_text(result).splitlines() if line.startswith("ERROR: ") and needle in line]
    assert lines, f"no ERROR line naming {needle}:\n{output_text(result)[-6000:]}"
    return lines[0]


def assert_readable(message: str, *parts: str) -> None:
    """The house style "<file>: field '<field>': <problem>. Fix: <fix>", with the given parts."""
    assert re.search(r": field '.+?': .+\. Fix: .+", message), message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("bad_inputs")
    return root, make_world(root)


# ------------------------------------------------------------------ bad data files: one keep-going run


def _normalised() -> np.ndarray:
    X = counts().astype(np.float64)
    return (X / X.sum(axis=1, keepdims=True) * 1e4).astype(np.float32)


def _negative() -> np.ndarray:
    X = counts()
    X[0, 0] = -2
    return X


def _two_genes_per_cell() -> np.ndarray:
    X = np.zeros((N_CELLS, N_GENES), dtype=np.int32)
    X[:, :2] = 3
    return X


# sample name -> (writer(path), file name, format, expected substrings: field, problem, fix)
DATA_CASES = {
    "corrupt_h5ad": (lambda p: truncate(write_h5ad(p, counts())), "corrupt.h5ad", "h5ad",
                     ("field 'path'", "cannot read as h5ad", "Fix: re-download or re-export the file")),
    "truncated_10x_h5": (lambda p: truncate(write_10x_h5(p, counts())), "truncated.h5", "10x_h5",
                         ("field 'path'", "cannot open as HDF5", "Fix: re-download or re-export the file")),
    "log_values": (lambda p: write_h5ad(p, np.log1p(_normalised())), "logged.h5ad", "h5ad",
                   ("field 'X'", "looks log-normalised, not raw counts", "Fix: provide raw integer counts",
                    "qc.allow_non_raw: true")),
    "normalised_values": (lambda p: write_h5ad(p, _normalised()), "normalised.h5ad", "h5ad",
                          ("field 'X'", "looks normalised, not raw counts", "Fix: provide raw integer counts")),
    "negative_counts": (lambda p: write_h5ad(p, _negative()), "negative.h5ad", "h5ad",
                        ("field 'X'", "negative values", "Fix: provide raw integer counts")),
    "unknown_genes": (lambda p: write_h5ad(p, counts(), var_names=[f"NOTAGENE{i}" for i in range(N_GENES)]),
                      "unknown_genes.h5ad", "h5ad",
                      ("field 'var_names'", f"none of the {N_GENES} gene identifiers", "NOTAGENE0",
                       "Fix: use Ensembl gene IDs or official human gene symbols")),
    "mouse_ids_in_human": (lambda p: write_h5ad(p, counts(), var_names=MOUSE_IDS), "mouse_ids.h5ad", "h5ad",
                           ("field 'species'", f"{N_GENES} of {N_GENES} gene IDs are mouse",
                            "declared human", "Fix: declare the sample's species correctly in the sample sheet")),
    "mouse_symbols_in_human": (lambda p: write_h5ad(p, counts(), var_names=MOUSE_SYMBOLS), "mouse_symbols.h5ad",
                               "h5ad", ("field 'species'", "mouse-style symbols",
                                        "Fix: declare the sample's species correctly in the sample sheet")),
    "duplicate_barcodes": (lambda p: write_h5ad(p, counts(), obs_names=barcodes(N_CELLS // 2) * 2),
                           "duplicate_barcodes.h5ad", "h5ad",
                           ("field 'obs_names'", "duplicate cell barcodes", "AAACCTG0000-1",
                            "Fix: make barcodes unique")),
    "empty_after_qc": (lambda p: write_h5ad(p, _two_genes_per_cell()), "empty_after_qc.h5ad", "h5ad",
                       ("field 'cells'", "0 cells remain after QC", "qc.min_cells = 4",
                        "remove it from the sample sheet, or set qc.small_sample: drop")),
}
QC_OUTPUTS = ("{}.h5ad", "{}.filters.tsv", "{}.gene_ids.json", "{}.qc.png")
PARTIAL_UNKNOWN = 5  # symbols of the good-enough sample that no gene table lists


@pytest.fixture(scope="module")
def data_run(world):
    """One ``snakemake --keep-going`` over every bad data file, a half-known sample, and bad references."""
    root, refs = world
    run = root / "data_run"
    (run / "data").mkdir(parents=True)
    rows = []
    for sample, (write, name, fmt, _) in DATA_CASES.items():
        rows.append({"sample": sample, "species": "human", "path": str(write(run / "data" / name)), "format": fmt})
    partial = HUMAN_SYMBOLS[:-PARTIAL_UNKNOWN] + [f"NOTAGENE{i}" for i in range(PARTIAL_UNKNOWN)]
    rows.append({"sample": "some_unknown_genes", "species": "human", "format": "h5ad",
                 "path": str(write_h5ad(run / "data" / "some_unknown.h5ad", counts(), var_names=partial))})
    sheet = write_sheet(run / "samples.tsv", rows)
    # A mouse gene table without its biotype column; a download with a wrong checksum; one without any.
    bad_table = run / "mouse_genes_no_biotype.tsv"
    pd.DataFrame({"ensembl_id": MOUSE_IDS, "symbol": MOUSE_SYMBOLS, "type": "protein_coding"}).to_csv(
        bad_table, sep="\t", index=False)
    served = run / "served"
    served.mkdir()
    write_orthologs(served / "orthologs_download.csv")
    write_text_file = served / "network_download.tsv"
    write_text_file.write_text("source\ttarget\nCD3E\tCD4\n")
    config = write_config(
        run, refs, sheet, references__mouse_genes=str(bad_table),
        references__orthologs={"url": (served / "orthologs_download.csv").as_uri(), "sha256": "0" * 64},
        references__networks={"human": [{"url": write_text_file.as_uri(), "name": "unverified"}], "mouse": []})
    workdir = run / "work"
    workdir.mkdir()
    targets = [f"results/qc/{row['sample']}.h5ad" for row in rows] + [
        "results/references/mouse_genes.tsv", "resources/downloads/orthologs_download.csv",
        "resources/downloads/network_download.tsv"]
    result = snakemake(workdir, config, *targets, keep_going=True)
    return {"result": result, "workdir": workdir, "data": run / "data", "bad_table": bad_table,
            "served": served}


@pytest.mark.workflow
@pytest.mark.parametrize("sample", list(DATA_CASES))
def test_bad_data_file_fails_its_qc_job_clearly(data_run, sample):
    result, workdir = data_run["result"], data_run["workdir"]
    _, name, _, expected = DATA_CASES[sample]
    assert result.returncode != 0
    path = data_run["data"] / name
    message = error_line(result, f"ERROR: {path}: ")  # names the file
    assert_readable(message, *expected)
    assert re.search(rf"Error in rule qc:\n(    .*\n)*?    output: results/qc/{sample}\.h5ad,", output_text(result))
    assert f"results/logs/qc/{sample}.log" in message  # and where the traceback is
    assert expected[1] in (workdir / f"results/logs/qc/{sample}.log").read_text()
    left = [name.format(sample) for name in QC_OUTPUTS if (workdir / "results/qc" / name.format(sample)).exists()]
    assert not left, f"partial outputs of a failed job: {left}"
    assert not leftovers(workdir)


@pytest.mark.workflow
def test_partly_unknown_genes_warn_and_are_reported(data_run):
    """Some identifiers unknown: the sample passes, the log warns, the report lists them."""
    workdir = data_run["workdir"]
    assert (workdir / "results/qc/some_unknown_genes.h5ad").is_file()
    log = (workdir / "results/logs/qc/some_unknown_genes.log").read_text()
    assert re.search(rf"WARNING .*{PARTIAL_UNKNOWN} unmapped and 0 ambiguous gene identifiers dropped "
                     r"\(listed in results/qc/some_unknown_genes.gene_ids.json\)", log), log
    import json

    report = json.loads((workdir / "results/qc/some_unknown_genes.gene_ids.json").read_text())
    assert report["n_unmapped"] == PARTIAL_UNKNOWN and report["n_mapped"] == N_GENES - PARTIAL_UNKNOWN
    assert report["unmapped"] == [f"NOTAGENE{i}" for i in range(PARTIAL_UNKNOWN)]
    assert ad.read_h5ad(workdir / "results/qc/some_unknown_genes.h5ad").n_vars == N_GENES - PARTIAL_UNKNOWN


@pytest.mark.workflow
def test_reference_table_with_wrong_columns(data_run):
    result, workdir = data_run["result"], data_run["workdir"]
    message = error_line(result, f"ERROR: {data_run['bad_table']}: ")
    assert_readable(message, "field 'biotype'", "missing column(s) ['biotype']",
                    "Fix: add the column(s); accepted layouts: gene table TSV (ensembl_id, symbol, biotype)")
    assert not (workdir / "results/references/mouse_genes.tsv").exists()


@pytest.mark.workflow
@pytest.mark.parametrize("name, expected", [
    ("orthologs_download.csv", ("field 'sha256'", "checksum mismatch: expected " + "0" * 64,
                                "Fix: check that the URL points at the intended release")),
    ("network_download.tsv", ("field 'sha256'", "a downloaded reference needs its checksum",
                              "Fix: add sha256:")),
])
def test_download_is_used_only_when_its_checksum_matches(data_run, name, expected):
    result, workdir = data_run["result"], data_run["workdir"]
    message = error_line(result, f"ERROR: {(data_run['served'] / name).as_uri()}: ")
    assert_readable(message, *expected)
    downloads = workdir / "resources/downloads"
    assert not (downloads.exists() and any(downloads.iterdir())), list(downloads.iterdir())  # nor temp files


# ------------------------------------------------------------------ sample sheet and config: stop while parsing


def _sheet_case(rows=None, columns=("sample", "species", "path", "format", "genome"), **config):
    return {"rows": rows, "columns": columns, "config": config}


GOOD_ROW = {"sample": "s1", "species": "human", "format": "h5ad"}  # path: the world's good sample
PARSE_CASES = {
    "sheet_missing_column": (_sheet_case(columns=("sample", "species", "path")),
                             ("samples.tsv: field 'format'", "missing column(s) ['format']",
                              "Fix: add the column(s): tab-separated, one row per sample")),
    "sheet_unknown_species": (_sheet_case(rows=[dict(GOOD_ROW, species="rat")]),
                              ("samples.tsv: field 'species'", "row 1 (sample 's1'): 'rat' is not one of",
                               "Fix: set species to one of ['human', 'mouse']")),
    "sheet_unknown_format": (_sheet_case(rows=[dict(GOOD_ROW, format="loom")]),
                             ("samples.tsv: field 'format'", "'loom' is not one of",
                              "Fix: set format to one of ['h5ad', '10x_h5', '10x_mtx']")),
    "sheet_bad_sample_name": (_sheet_case(rows=[dict(GOOD_ROW, sample="s 1")]),
                              ("samples.tsv: field 'sample'", "'s 1' does not match",
                               "Fix: set sample to a string matching")),
    "sheet_duplicate_names": (_sheet_case(rows=[GOOD_ROW, GOOD_ROW]),
                              ("samples.tsv: field 'sample'", "duplicate sample names ['s1']",
                               "Fix: give every row a unique sample name")),
    "sheet_missing_file": (_sheet_case(rows=[dict(GOOD_ROW, path="data/absent.h5ad")]),
                           ("samples.tsv: field 'path'", "sample 's1': data/absent.h5ad not found",
                            "relative paths start at the working directory", "Fix: correct the path")),
    "config_wrong_type": (_sheet_case(qc__min_cells="four"),
                          ("config.yaml: field 'qc.min_cells'", "'four' is not of type 'integer'",
                           "Fix: set qc.min_cells to an integer >= 1")),
    "config_out_of_range": (_sheet_case(qc__max_mito_fraction=1.5),
                            ("config.yaml: field 'qc.max_mito_fraction'", "1.5 is greater than the maximum of 1",
                             "Fix: set qc.max_mito_fraction to a number >= 0, <= 1")),
    "config_unknown_key": (_sheet_case(qc__min_gene=5),
                           ("config.yaml: field 'qc.min_gene'", "unknown key(s) ['min_gene']",
                            "Fix: remove or rename them; known keys here: ['allow_non_raw'")),
    "config_missing_key": (_sheet_case(tokens={"homology_policy": "one2one"}),
                           ("config.yaml: field 'tokens.chunk_size'", "missing",
                            "Fix: add tokens.chunk_size: an integer >= 1")),
}


@pytest.mark.workflow
@pytest.mark.parametrize("case", list(PARSE_CASES))
def test_bad_sample_sheet_or_config_stops_the_workflow(world, tmp_path, case):
    root, refs = world
    spec, expected = PARSE_CASES[case]
    rows = spec["rows"] or [GOOD_ROW]
    rows = [{"path": str(refs["good"]), **row} for row in rows]
    sheet = write_sheet(tmp_path / "samples.tsv", rows, columns=spec["columns"])
    config = write_config(tmp_path, refs, sheet, **spec["config"])
    result = snakemake(tmp_path, config, "results/qc/s1.h5ad")
    output = output_text(result)
    assert result.returncode != 0
    message = next((line for line in output.splitlines() if "Fix: " in line), "")
    assert message.startswith(str(sheet) if case.startswith("sheet") else f"config {config}"), output[-3000:]
    assert_readable(message, *expected)
    assert "Traceback" not in output and "Failed validating" not in output  # one readable error, no dump
    assert not (tmp_path / "results").exists()


# ------------------------------------------------------------------ library level


def test_sample_sheet_not_found(tmp_path):
    from genecompass.sample_sheet import read_sample_sheet

    with pytest.raises(InputError) as error:
        read_sample_sheet(tmp_path / "nope.tsv", ROOT / "workflow/schemas/samples.schema.yaml")
    assert_readable(str(error.value), f"{tmp_path / 'nope.tsv'}: field 'samples'", "sample sheet not found",
                    "Fix: set `samples` in the config")


def test_demo_sample_sheet_passes_and_simulated_files_may_be_missing(tmp_path, monkeypatch):
    from genecompass.sample_sheet import read_sample_sheet

    monkeypatch.chdir(tmp_path)  # nothing simulated yet: the rule makes the files
    sheet = read_sample_sheet(ROOT / "config/samples.tsv", ROOT / "workflow/schemas/samples.schema.yaml",
                              produced_under="results/simulate")
    assert sheet["sample"].tolist()[:2] == ["human_s1", "human_s2"] and (sheet["genome"] == "").all()
    with pytest.raises(InputError, match="field 'path': sample 'human_s1'"):
        read_sample_sheet(ROOT / "config/samples.tsv", ROOT / "workflow/schemas/samples.schema.yaml")


def test_schema_error_for_a_bad_reference_entry():
    from genecompass.errors import schema_error

    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    assert schema_error(config, schema, "config.yaml") is None
    config["references"]["orthologs"] = 5
    assert_readable(str(schema_error(config, schema, "config.yaml")), "field 'references.orthologs'",
                    "Fix: set references.orthologs to a string or a mapping")
    config["references"]["orthologs"] = {"url": "https://example.org/o.csv", "md5": "abc"}
    assert_readable(str(schema_error(config, schema, "config.yaml")), "field 'references.orthologs.md5'",
                    "unknown key(s) ['md5']", "known keys here: ['layout', 'name', 'path', 'sha256', 'url']")


def test_hgnc_table_with_wrong_columns(tmp_path):
    from genecompass.references import hgnc_ensembl_ids

    path = tmp_path / "hgnc.tsv"
    path.write_text("hgnc_id\tsymbol\tensembl_id\nHGNC:1\tGAPDH\tENSG00000111640\n")
    with pytest.raises(InputError) as error:
        hgnc_ensembl_ids(path)
    assert_readable(str(error.value), f"{path}: field 'ensembl_gene_id'", "missing column",
                    "Fix: give the HGNC complete set")
    assert hgnc_ensembl_ids(write_hgnc(tmp_path / "good.tsv")) == HUMAN_IDS


def test_download_without_checksum_is_refused_before_any_request(tmp_path):
    from genecompass.downloads import resolve_reference

    source = tmp_path / "served.tsv"
    source.write_text("a\tb\n")
    entry = {"url": source.as_uri()}
    with pytest.raises(InputError) as error:
        resolve_reference(entry, tmp_path / "cache")
    assert_readable(str(error.value), f"{source.as_uri()}: field 'sha256'", "Fix: add sha256:")
    assert not (tmp_path / "cache").exists()


@pytest.fixture
def labelled_obs() -> pd.DataFrame:
    return pd.DataFrame({"cell_type": ["T", "B", "T", "B"], "donor": ["d1", "d1", "d2", "d2"]},
                        index=[f"c{i}" for i in range(4)])


def test_finetuning_labels_column_missing(labelled_obs):
    from genecompass.tasks.annotation.finetune import dataset_labels

    with pytest.raises(InputError) as error:
        dataset_labels(labelled_obs, "celltype", source="results/qc/a.h5ad",
                       setting="tasks.annotation.datasets 'demo' label_column")
    assert_readable(str(error.value), "results/qc/a.h5ad: field 'obs['celltype']'",
                    "no such column among the cells' obs columns ['cell_type', 'donor']",
                    "Fix: set tasks.annotation.datasets 'demo' label_column to the obs column")
    assert dataset_labels(labelled_obs, "cell_type").tolist() == ["T", "B", "T", "B"]


def test_finetuning_labels_of_one_class(labelled_obs):
    from genecompass.tasks.annotation.finetune import (
        dataset_labels,
        logistic_regression_baseline,
    )

    one = labelled_obs.assign(cell_type="T")
    with pytest.raises(InputError) as error:
        dataset_labels(one, "cell_type", source="results/qc/a.h5ad")
    assert_readable(str(error.value), "results/qc/a.h5ad: field 'obs['cell_type']'",
                    "the 4 cells carry 1 label(s) ['T']; classification needs at least two",
                    "Fix: annotate samples with two or more cell types")
    # The training cells alone of one class: refused before any fitting.
    counts_ = ad.AnnData(X=sp.csr_matrix(np.ones((4, 3), dtype=np.float32)))
    with pytest.raises(InputError) as error:
        logistic_regression_baseline(counts_, ["T", "T", "T", "B"], ["train", "validation", "train", "test"])
    assert_readable(str(error.value), "field 'labels'", "the training cells carry a single label ['T']",
                    "Fix: choose training groups with at least two cell types")


# ------------------------------------------------------------------ safe loading

UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
UNSAFE_CALLS = {"read_pickle", "to_pickle"}
# torch.save writes only the pre-training resume state (optimizer, scheduler, step and RNG),
# read back with weights_only=True; model weights go through save_pretrained (safetensors).
TORCH_SAVE_ALLOWED = {"genecompass/pretrain.py"}
# The released GeneCompass dictionaries are pickles: this one module reads them, through an
# Unpickler whose find_class admits no callable but NumPy's scalar rebuild (tests/test_released.py).
PICKLE_IMPORT_ALLOWED = {"genecompass/released.py"}


def unsafe_loading(source: str, name: str) -> list[str]:
    """Lines of ``source`` that load or write data through pickle."""
    import ast

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                if module.split(".")[0] in UNSAFE_MODULES and name not in PICKLE_IMPORT_ALLOWED:
                    found.append(f"{name}:{node.lineno}: import {module}")
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        attr = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
        keywords = {k.arg: k.value for k in node.keywords}
        if attr in UNSAFE_CALLS:
            found.append(f"{name}:{node.lineno}: {attr}()")
        allow = keywords.get("allow_pickle")
        if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
            found.append(f"{name}:{node.lineno}: allow_pickle not False")
        if owner == "torch" and attr == "load":
            weights_only = keywords.get("weights_only")
            if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                found.append(f"{name}:{node.lineno}: torch.load without weights_only=True")
        if owner == "torch" and attr == "save" and name not in TORCH_SAVE_ALLOWED:
            found.append(f"{name}:{node.lineno}: torch.save (write model weights with save_pretrained)")
        serialization = keywords.get("safe_serialization")
        if serialization is not None and not (isinstance(serialization, ast.Constant) and serialization.value):
            found.append(f"{name}:{node.lineno}: safe_serialization not True")
    return found


def test_the_unsafe_loading_check_catches_each_pattern():
    bad = ("import pickle\nfrom joblib import load\nimport torch, numpy as np, pandas as pd\n"
           "torch.load('m.pt')\ntorch.load('m.pt', weights_only=False)\nnp.load('a.npy', allow_pickle=True)\n"
           "pd.read_pickle('x')\ntorch.save({}, 'm.pt')\nmodel.save_pretrained('d', safe_serialization=False)\n")
    hits = unsafe_loading(bad, "x.py")
    assert sorted(int(hit.split(":")[1]) for hit in hits) == [1, 2, 4, 5, 6, 7, 8, 9], hits
    good = ("import torch, numpy as np\ntorch.load('s.pt', weights_only=True, map_location='cpu')\n"
            "np.load('a.npz', allow_pickle=False)\nmodel.save_pretrained('d')\n")
    assert unsafe_loading(good, "x.py") == []


def test_no_pickle_and_only_weights_only_torch_loads_in_the_source_tree():
    files = sorted([*(ROOT / "genecompass").rglob("*.py"), *(ROOT / "scripts").glob("*.py")])
    assert len(files) > 30
    found = [hit for path in files
             for hit in unsafe_loading(path.read_text(), str(path.relative_to(ROOT)))]
    for path in [ROOT / "Snakefile", *(ROOT / "rules").glob("*.smk")]:  # not Python: plain text
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(r"\bpickle\b|allow_pickle\s*=\s*True|torch\.load\((?!.*weights_only=True)", line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "unsafe loading:\n" + "\n".join(found)
