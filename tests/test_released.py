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
    with pytest.raises(InputError, match="gaps or repeats"):
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
