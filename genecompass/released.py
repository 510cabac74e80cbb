"""The released GeneCompass dictionaries, read without running code from the pickles.

The authors' release (xCompass-AI/GeneCompass) ships its token dictionary, its
per-species gene medians and its mouse -> human homolog map as Python pickles:

- token dictionary: ``{"<pad>": 0, "<mask>": 1, "ENSG...": id, "ENSMUSG...": id, ...}``;
  human and mouse genes each have their own token;
- gene medians (one file per species): ``{"ENSG...": median, ...}``, the median
  of a gene's non-zero raw counts (the release does not divide by the cell
  total before it divides by the median);
- homolog map: ``{human token id: mouse token id}``; the model looks knowledge
  of a mouse token up in the row of its human homolog.

``pickle.load`` would run whatever a pickle names. ``read_plain_pickle`` accepts only
plain containers and numbers (dict, list, tuple, set, str, bytes, int, float,
bool, None) plus NumPy scalars, which a median dictionary built with NumPy holds
(rebuilt from their bytes; no other callable is reachable), and refuses
anything else with an error that names the file and the fix.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from genecompass.errors import InputError

SPECIAL_TOKENS = ("<pad>", "<mask>")
SPECIES_PREFIXES = {"human": "ENSG", "mouse": "ENSMUSG"}   # ENSMUSG does not start with ENSG

# The only globals a released dictionary may name: how pickle rebuilds a NumPy scalar.
_NUMPY_SCALAR_GLOBALS = {
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}


class _PlainUnpickler(pickle.Unpickler):
    def __init__(self, file, path):
        super().__init__(file)
        self.path = path

    def find_class(self, module, name):
        if (module, name) in _NUMPY_SCALAR_GLOBALS:
            return super().find_class(module, name)
        raise InputError(
            self.path, "pickle", f"it names {module}.{name}, which a plain dictionary never does "
            "(loading it would run that code)",
            "use the release's own dictionary files, or re-save this one as plain dict/list/str/int/float "
            "values (e.g. json) from a Python session you trust")


def read_plain_pickle(path):
    """The object in pickle ``path``, if it is built from plain values only (see module docstring)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(path, "file", f"cannot be read ({error.strerror})",
                         "check the path in config released.*") from error
    try:
        obj = _PlainUnpickler(io.BytesIO(data), path).load()
    except InputError:
        raise
    except Exception as error:   # truncated or not a pickle at all
        raise InputError(path, "pickle", f"is not a readable pickle ({error})",
                         "download the file again and check its checksum") from error
    return _plain(obj)


def _plain(obj):
    """NumPy scalars as Python numbers, containers walked."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {_plain(key): _plain(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return type(obj)(_plain(value) for value in obj)
    return obj


def gene_species(token: str) -> str:
    """human / mouse / special for a released token (an Ensembl gene ID or a special token)."""
    if token in SPECIAL_TOKENS:
        return "special"
    if token.startswith(SPECIES_PREFIXES["mouse"]):
        return "mouse"
    if token.startswith(SPECIES_PREFIXES["human"]):
        return "human"
    return "unknown"


def _mapping(obj, path, what: str, key_type, value_type) -> dict:
    if not isinstance(obj, dict):
        raise InputError(path, "pickle", f"holds a {type(obj).__name__}, not the {what} dict",
                         "pass the release's file for this entry")
    bad = next(((k, v) for k, v in obj.items()
                if not isinstance(k, key_type) or isinstance(v, bool) or not isinstance(v, value_type)), None)
    if bad is not None:
        raise InputError(path, f"entry {bad[0]!r}", f"maps to {bad[1]!r}, not the {what} expected",
                         "pass the release's file for this entry")
    return obj


def read_token_dictionary(path) -> pd.DataFrame:
    """The released token dictionary: ``token_id, token, species`` ordered by token id.

    Token ids must be 0..n-1 without gaps or repeats (the model's rows).
    """
    tokens = _mapping(read_plain_pickle(path), path, "token dictionary (Ensembl ID -> token id)", str, int)
    table = pd.DataFrame({"token_id": list(tokens.values()), "token": list(tokens.keys())})
    table = table.sort_values("token_id", kind="stable").reset_index(drop=True)
    if not np.array_equal(table["token_id"].to_numpy(), np.arange(len(table))):
        raise InputError(path, "token ids", "are not 0..n-1 without gaps or repeats",
                         "pass the release's token dictionary unchanged")
    table["species"] = [gene_species(token) for token in table["token"]]
    unknown = table.loc[table["species"] == "unknown", "token"]
    if len(unknown):
        raise InputError(path, "tokens", f"{len(unknown)} are neither special tokens nor human/mouse "
                         f"Ensembl gene IDs (e.g. {list(unknown[:3])})", "pass the release's token dictionary")
    return table


def read_medians(paths: Mapping[str, str | Path], dictionary: pd.DataFrame) -> pd.DataFrame:
    """``token_id, token, median`` for every gene token, from the per-species median pickles.

    A gene of the dictionary without a median gets median 1, as the release's
    preprocessing does; ``median_source`` says which rows that is
    (``released`` / ``default_1``).
    """
    medians: dict[str, float] = {}
    for species, path in paths.items():
        if species not in SPECIES_PREFIXES:
            raise InputError(path, "species", f"'{species}' is not human or mouse",
                             "key the median files by human / mouse")
        values = _mapping(read_plain_pickle(path), path, "gene median dict (Ensembl ID -> median)", str, (int, float))
        bad = [gene for gene, value in values.items() if not np.isfinite(value) or value <= 0]
        if bad:
            raise InputError(path, f"median of {bad[0]}", f"is {values[bad[0]]} ({len(bad)} such genes)",
                             "medians must be positive numbers; pass the release's file unchanged")
        medians.update(values)
    genes = dictionary[dictionary["species"] != "special"]
    found = genes["token"].map(medians)
    return pd.DataFrame({
        "token_id": genes["token_id"].to_numpy(),
        "token": genes["token"].to_numpy(),
        "median": found.fillna(1.0).to_numpy(dtype=np.float64),
        "median_source": np.where(found.notna(), "released", "default_1"),
    })


def read_homolog_index(path, dictionary: pd.DataFrame) -> np.ndarray:
    """Per token id, the token whose knowledge rows it reads: its human homolog for a mouse gene, else itself."""
    pairs = _mapping(read_plain_pickle(path), path, "homolog map (human token id -> mouse token id)", int, int)
    n = len(dictionary)
    species = dictionary["species"].to_numpy()
    index = np.arange(n, dtype=np.int64)
    for human, mouse in pairs.items():
        if not (0 <= human < n and 0 <= mouse < n):
            raise InputError(path, f"entry {human}: {mouse}", f"names a token id outside 0..{n - 1}",
                             "pass the homolog map of the same release as the token dictionary")
        if species[human] != "human" or species[mouse] != "mouse":
            raise InputError(path, f"entry {human}: {mouse}",
                             f"maps a {species[human]} token to a {species[mouse]} token, not human -> mouse",
                             "pass the homolog map of the same release as the token dictionary")
        index[mouse] = human
    return index
