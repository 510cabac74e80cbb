"""The released GeneCompass dictionaries (restricted unpickling) and the released tokenization."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from genecompass import released
from genecompass import tokenize as tk
from genecompass.errors import InputError

HUMAN = [f"ENSG{i:011d}" for i in range(6)]
MOUSE = [f"ENSMUSG{i:011d}" for i in range(4)]


def dump(path, obj):
    path.write_bytes(pickle.dumps(obj))
    return path


def release_files(tmp_path):
    """A tiny release: token dictionary, per-species medians (one human gene without one), homolog map."""
    tokens = {"<pad>": 0, "<mask>": 1, **{g: 2 + i for i, g in enumerate(HUMAN + MOUSE)}}
    rng = np.random.default_rng(0)
    human_medians = {g: np.float64(m) for g, m in zip(HUMAN[:-1], rng.uniform(0.5, 4, 5))}   # numpy scalars
    mouse_medians = {g: float(m) for g, m in zip(MOUSE, rng.uniform(0.5, 4, 4))}
    homologs = {tokens[HUMAN[0]]: tokens[MOUSE[0]], tokens[HUMAN[2]]: tokens[MOUSE[1]]}
    return {"tokens": dump(tmp_path / "tokens.pickle", tokens),
            "human": dump(tmp_path / "human_gene_median.pickle", human_medians),
            "mouse": dump(tmp_path / "mouse_gene_median.pickle", mouse_medians),
            "homologs": dump(tmp_path / "homologous_hm_token.pickle", homologs)}


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_call_a_function_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    path = dump(tmp_path / "evil.pickle", {"ENSG00000000001": _RunsCode(marker)})
    with pytest.raises(InputError) as error:
        released.read_plain_pickle(path)
    message = str(error.value)
    assert str(path) in message and "system" in message and "Fix:" in message
    assert not marker.exists()
    # a class instance (a global too) is refused the same way
    with pytest.raises(InputError, match="collections.OrderedDict"):
        import collections
        released.read_plain_pickle(dump(tmp_path / "ordered.pickle", collections.OrderedDict(a=1)))


def test_plain_values_and_numpy_scalars_are_read_as_python_values(tmp_path):
    path = dump(tmp_path / "plain.pickle", {"a": [1, 2.5, None, True], "b": (np.float64(1.5), np.int64(3)),
                                           "c": {"d": b"x"}})
    obj = released.read_plain_pickle(path)
    assert obj == {"a": [1, 2.5, None, True], "b": (1.5, 3), "c": {"d": b"x"}}
    assert type(obj["b"][0]) is float and type(obj["b"][1]) is int
    (tmp_path / "cut.pickle").write_bytes(pickle.dumps({"a": 1})[:5])
    with pytest.raises(InputError, match="not a readable pickle"):
        released.read_plain_pickle(tmp_path / "cut.pickle")


def test_dictionary_medians_and_homolog_index(tmp_path):
    files = release_files(tmp_path)
    dictionary = released.read_token_dictionary(files["tokens"])
    assert list(dictionary["token"][:2]) == ["<pad>", "<mask>"]
    assert dictionary["species"].value_counts().to_dict() == {"human": 6, "mouse": 4, "special": 2}
    medians = released.read_medians({"human": files["human"], "mouse": files["mouse"]}, dictionary)
    assert len(medians) == 10 and medians["token_id"].tolist() == list(range(2, 12))
    missing = medians.set_index("token").loc[HUMAN[-1]]
    assert missing["median"] == 1.0 and missing["median_source"] == "default_1"
    assert (medians["median_source"] == "released").sum() == 9
    index = released.read_homolog_index(files["homologs"], dictionary)
    expected = np.arange(12)
    expected[8], expected[9] = 2, 4            # MOUSE[0] -> HUMAN[0], MOUSE[1] -> HUMAN[2]
    np.testing.assert_array_equal(index, expected)


def test_dictionary_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(InputError, match="without gaps"):
        released.read_token_dictionary(dump(tmp_path / "gap.pickle", {"<pad>": 0, HUMAN[0]: 2}))
    with pytest.raises(InputError, match="neither special tokens nor"):
        released.read_token_dictionary(dump(tmp_path / "odd.pickle", {"<pad>": 0, "GAPDH": 1}))
    with pytest.raises(InputError, match="not the token dictionary"):
        released.read_token_dictionary(dump(tmp_path / "list.pickle", [1, 2]))
    files = release_files(tmp_path)
    dictionary = released.read_token_dictionary(files["tokens"])
    with pytest.raises(InputError, match="mouse token to a human token"):
        released.read_homolog_index(dump(tmp_path / "swapped.pickle", {8: 2}), dictionary)
    with pytest.raises(InputError, match="must be positive"):
        released.read_medians({"human": dump(tmp_path / "neg.pickle", {HUMAN[0]: -1.0})}, dictionary)


def released_reference(cell_counts: np.ndarray, genes, gene_to_token, median_of_gene, max_length):
    """The release's preprocessing of one cell, written from its formulas: genes without a token
    are removed, counts / gene median (no division by the cell total), log2(1 + x) as scanpy's
    log1p(base=2), non-zero genes ranked by value descending, the first max_length kept."""
    keep = [i for i, g in enumerate(genes) if g in gene_to_token]
    x = np.asarray(cell_counts, dtype=np.float64)[keep] / np.array([median_of_gene[genes[i]] for i in keep])
    x = np.log1p(x) / np.log(2)
    tokens = np.array([gene_to_token[genes[i]] for i in keep])
    nonzero = np.flatnonzero(x)
    order = nonzero[np.lexsort((tokens[nonzero], -x[nonzero]))]     # ties: ascending token id
    return tokens[order][:max_length], x[order][:max_length]


@pytest.mark.parametrize("max_length", [3, 2048])
def test_released_tokenization_equals_the_release_preprocessing(tmp_path, max_length):
    files = release_files(tmp_path)
    dictionary = released.read_token_dictionary(files["tokens"])
    medians = released.read_medians({"human": files["human"], "mouse": files["mouse"]}, dictionary)
    gene_to_token = dict(zip(dictionary["token"], dictionary["token_id"]))
    genes = HUMAN + ["ENSG99999999999"]          # a gene the release does not know
    rng = np.random.default_rng(1)
    counts = np.where(rng.random((40, len(genes))) < 0.6, rng.integers(1, 50, (40, len(genes))), 0)
    counts[0] = 0
    counts[1, :] = [3, 3, 3, 3, 3, 3, 7]          # equal counts: ranked by median alone
    tokenizer = tk.CellTokenizer(genes, gene_to_token, medians, max_length=max_length, scheme="released")
    chunk = tokenizer(sp.csr_matrix(counts.astype(np.int32)))
    median_of_gene = dict(zip(medians["token"], medians["median"]))
    for i in range(len(counts)):
        ids, values = chunk.cell(i)
        ref_ids, ref_values = released_reference(counts[i], genes, gene_to_token, median_of_gene, max_length)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_allclose(values, ref_values, rtol=1e-6)
    assert chunk.lengths[0] == 0
    # the paper scheme of the same cells differs: it divides by the cell total and takes ln
    paper = tk.CellTokenizer(genes, gene_to_token, medians, max_length=max_length)(sp.csr_matrix(counts))
    assert not np.allclose(paper.cell(2)[1], chunk.cell(2)[1])


def test_an_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="paper"):
        tk.CellTokenizer(HUMAN, {HUMAN[0]: 2}, pd.DataFrame({"token_id": [2], "median": [1.0]}), scheme="raw")


def our_dictionary():
    """A small dictionary of ours: specials, a homologous token (one human, two mouse genes), human-only
    and mouse-only genes; with medians and gene tables (symbols)."""
    from genecompass.dictionary import COLUMNS

    rows = [(0, "<pad>", "special", "", ""), (1, "<mask>", "special", "", ""), (2, "<human>", "special", "", ""),
            (3, "<mouse>", "special", "", ""), (4, HUMAN[0], "homologous", HUMAN[0], f"{MOUSE[0]};{MOUSE[1]}"),
            (5, HUMAN[1], "human_only", HUMAN[1], ""), (6, MOUSE[2], "mouse_only", "", MOUSE[2])]
    table = pd.DataFrame(rows, columns=COLUMNS[:5])
    table["human_symbol"] = ["", "", "", "", "A1", "B2", ""]
    table["mouse_symbol"] = ["", "", "", "", "A1a", "", "Cc3"]
    table["homology_type"] = ""
    medians = pd.DataFrame({"token_id": [4, 5, 6], "median": [1.25, 3.0 / 7.0, 2.5], "n_nonzero": [3, 4, 5]})
    genes = {"human": pd.DataFrame({"ensembl_id": HUMAN[:2], "symbol": ["A1", "B2"]}),
             "mouse": pd.DataFrame({"ensembl_id": MOUSE[:3], "symbol": ["A1a", "A1b", "Cc3"]})}
    return table[COLUMNS], medians, genes


def test_our_dictionary_and_medians_round_trip_through_the_released_pickles(tmp_path):
    table, medians, genes = our_dictionary()
    paths = released.write_released_dictionaries(table, medians, tmp_path)
    read = released.read_token_dictionary(paths["token_dictionary"])
    assert sorted(read.loc[read["token_id"] == 4, "token"]) == sorted([HUMAN[0], MOUSE[0], MOUSE[1]])
    back = released.dictionary_from_released(read, genes)
    for column in ("token_id", "token", "token_class", "human_ensembl_id", "human_symbol", "mouse_symbol"):
        assert back[column].tolist() == table[column].tolist(), column
    assert sorted(back.loc[4, "mouse_ensembl_id"].split(";")) == [MOUSE[0], MOUSE[1]]
    medians_back = released.read_medians({"human": paths["human"], "mouse": paths["mouse"]}, read)
    assert medians_back["token_id"].tolist() == [4, 5, 6]
    assert medians_back["median"].tolist() == medians["median"].tolist()      # exact: the shards use them
    assert set(medians_back["median_source"]) == {"released"}


def tiny_released_layout_model(vocab_size: int):
    import torch

    from genecompass.model import GeneCompassConfig, GeneCompassForPretraining
    from genecompass.model.configuration import RELEASED_LAYOUT

    config = GeneCompassConfig(vocab_size=vocab_size, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=16, max_position_embeddings=10, knowledge_kinds=["promoter", "grn"],
                               **RELEASED_LAYOUT)
    torch.manual_seed(0)
    return GeneCompassForPretraining(config).eval()


@pytest.mark.parametrize("packed", ["folder", "tar.gz", "zip"])
def test_export_then_import_in_the_workflow_gives_back_model_dictionary_and_medians(tmp_path, packed):
    import shutil

    import torch

    from genecompass.dictionary import read_dictionary
    from genecompass.model import GeneCompassForPretraining
    from genecompass.tokenize import read_medians

    table, medians, genes = our_dictionary()
    model = tiny_released_layout_model(len(table))
    model.save_pretrained(tmp_path / "model")
    table.to_csv(tmp_path / "dictionary.tsv", sep="\t", index=False)
    tk.write_medians(medians, tmp_path / "medians.tsv")
    for species, frame in genes.items():
        frame.to_csv(tmp_path / f"{species}_genes.tsv", sep="\t", index=False)
    export = released.export_release(tmp_path / "model", tmp_path / "dictionary.tsv", tmp_path / "medians.tsv",
                                     tmp_path / "export" / "GeneCompass_Tiny")
    assert {p.name for p in export.iterdir()} == {"config.json", "model.safetensors",
                                                  *released.RELEASED_DICTIONARY_FILES.values()}
    checkpoint = export
    if packed != "folder":
        checkpoint = shutil.make_archive(str(tmp_path / "archive"), "gztar" if packed == "tar.gz" else "zip",
                                         tmp_path / "export")
    out = tmp_path / "imported"
    report = released.import_release(
        checkpoint, export / "human_mouse_tokens.pickle",
        {s: export / released.RELEASED_DICTIONARY_FILES[s] for s in ("human", "mouse")},
        {s: tmp_path / f"{s}_genes.tsv" for s in ("human", "mouse")},
        out / "model", out / "dictionary.tsv", out / "medians.tsv", out / "import.json")
    assert report["tokens"] == len(table) and report["config"]["knowledge_kinds"] == ["promoter", "grn"]
    again = GeneCompassForPretraining.from_pretrained(out / "model")
    mine, theirs = model.state_dict(), again.state_dict()
    # knowledge masks: the release has none (its rows are zero where a gene has no knowledge, as ours are)
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine if "mask" not in k)
    ids, values = torch.tensor([[4, 5, 6, 0]]), torch.tensor([[2.0, 1.0, 0.5, 0.0]])
    for species in (0, 1):
        with torch.no_grad():
            assert torch.equal(model(ids, values, torch.tensor([species])).logits,
                               again.eval()(ids, values, torch.tensor([species])).logits)
    dictionary = read_dictionary(out / "dictionary.tsv")
    assert dictionary["token_class"].tolist() == table["token_class"].tolist()
    assert read_medians(out / "medians.tsv")["median"].tolist() == medians["median"].tolist()


def test_an_archive_member_outside_its_folder_is_refused(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as archive:
        archive.writestr("../outside/config.json", "{}")
    with pytest.raises(InputError, match="outside the archive"):
        released.unpack_checkpoint(tmp_path / "evil.zip", tmp_path / "into")
    assert not (tmp_path / "outside").exists()
    (tmp_path / "plain.txt").write_text("x")
    with pytest.raises(InputError, match="neither a folder nor"):
        released.unpack_checkpoint(tmp_path / "plain.txt", tmp_path / "into")
