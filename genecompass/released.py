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

from genecompass import plan
from genecompass.errors import InputError

SPECIAL_TOKENS = ("<pad>", "<mask>")
SPECIES_PREFIXES = {"human": "ENSG", "mouse": "ENSMUSG"}   # ENSMUSG does not start with ENSG
# The release's file names (prior_knowledge/ and dict/ of its archive); exports write them side by side.
RELEASED_DICTIONARY_FILES = dict(zip(("token_dictionary", "human", "mouse"), plan.RELEASED_DICTIONARY_FILES))

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
    if token in SPECIAL_TOKENS or (token.startswith("<") and token.endswith(">")):
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
    """The released token dictionary: ``token_id, token, species``, one row per token, ordered by token id.

    Token ids must cover 0..n-1 without gaps (the model's rows). Several genes may share one id (a
    human gene and its mouse homologs, as in exports of our models, whose homologs share a token).
    """
    tokens = _mapping(read_plain_pickle(path), path, "token dictionary (Ensembl ID -> token id)", str, int)
    table = pd.DataFrame({"token_id": list(tokens.values()), "token": list(tokens.keys())})
    table = table.sort_values("token_id", kind="stable").reset_index(drop=True)
    ids = np.unique(table["token_id"].to_numpy())
    if not np.array_equal(ids, np.arange(len(ids))):
        raise InputError(path, "token ids", "do not cover 0..n-1 without gaps",
                         "pass the release's token dictionary unchanged")
    table["species"] = [gene_species(token) for token in table["token"]]
    unknown = table.loc[table["species"] == "unknown", "token"]
    if len(unknown):
        raise InputError(path, "tokens", f"{len(unknown)} are neither special tokens nor human/mouse "
                         f"Ensembl gene IDs (e.g. {list(unknown[:3])})", "pass the release's token dictionary")
    return table


def dictionary_from_released(table: pd.DataFrame, gene_tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Our token dictionary (``genecompass.dictionary.COLUMNS``) for a released one.

    ``gene_tables``: species -> our gene table (``ensembl_id``, ``symbol``), which gives the
    symbols the tasks look genes up by. A token id shared by a human and a mouse gene is a
    homologous token; genes the tables lack keep an empty symbol.
    """
    from genecompass.dictionary import COLUMNS

    symbols = {species: dict(zip(genes["ensembl_id"], genes["symbol"])) for species, genes in gene_tables.items()}
    rows = []
    for token_id, group in table.groupby("token_id", sort=True):
        ids = {species: group.loc[group["species"] == species, "token"].tolist() for species in ("human", "mouse")}
        if (group["species"] == "special").any():
            token_class = "special"
        elif ids["human"] and ids["mouse"]:
            token_class = "homologous"
        else:
            token_class = "human_only" if ids["human"] else "mouse_only"
        rows.append({
            "token_id": int(token_id), "token": group["token"].iloc[0], "token_class": token_class,
            **{f"{species}_ensembl_id": ";".join(ids[species]) for species in ("human", "mouse")},
            **{f"{species}_symbol": next((symbols.get(species, {}).get(g) for g in ids[species]
                                          if symbols.get(species, {}).get(g)), "") for species in ("human", "mouse")},
            "homology_type": "released" if token_class == "homologous" else "",
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def write_released_dictionaries(dictionary: pd.DataFrame, medians: pd.DataFrame, folder) -> dict[str, Path]:
    """Our dictionary and medians as the release's pickles in ``folder`` (``RELEASED_DICTIONARY_FILES``).

    Every Ensembl ID of a token maps to its id (our homologs share a token; their knowledge rows are
    their own, so the model's homolog index is the identity); each species' medians map its IDs to
    the token's median.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokens = {row.token: int(row.token_id) for row in dictionary.itertuples() if row.token_class == "special"}
    median_of = dict(zip(medians["token_id"].astype(int), medians["median"].astype(float)))
    species_medians = {"human": {}, "mouse": {}}
    for row in dictionary.itertuples():
        for species in ("human", "mouse"):
            for gene in filter(None, str(getattr(row, f"{species}_ensembl_id")).split(";")):
                tokens[gene] = int(row.token_id)
                if int(row.token_id) in median_of:
                    species_medians[species][gene] = median_of[int(row.token_id)]
    paths = {"token_dictionary": folder / RELEASED_DICTIONARY_FILES["token_dictionary"],
             **{species: folder / RELEASED_DICTIONARY_FILES[species] for species in ("human", "mouse")}}
    for key, data in (("token_dictionary", tokens), ("human", species_medians["human"]),
                      ("mouse", species_medians["mouse"])):
        with open(paths[key], "wb") as handle:
            pickle.dump(data, handle, protocol=4)
    return paths


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
    table = pd.DataFrame({
        "token_id": genes["token_id"].to_numpy(),
        "token": genes["token"].to_numpy(),
        "median": found.fillna(1.0).to_numpy(dtype=np.float64),
        "median_source": np.where(found.notna(), "released", "default_1"),
    })
    # One row per token: where genes share one, the first with a median.
    order = np.lexsort((table["median_source"] != "released", table["token_id"]))
    return table.iloc[order].drop_duplicates("token_id").reset_index(drop=True)


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


# --------------------------------------------------------------------------- workflow rules

def export_release(model_dir, dictionary_path, medians_path, out_folder) -> Path:
    """Rule ``export_released``: a variant built with ``RELEASED_LAYOUT`` as a released folder
    (``config.json``, ``model.safetensors`` and the dictionary pickles), which the authors' code reads.

    Written into a scratch folder beside it and moved in file by file, so no file is ever half-written."""
    import os
    import tempfile

    from genecompass.dictionary import read_dictionary
    from genecompass.model import GeneCompassForPretraining
    from genecompass.model.released import save_released
    from genecompass.tokenize import read_medians as read_median_table

    out = Path(out_folder)
    out.mkdir(parents=True, exist_ok=True)
    model = GeneCompassForPretraining.from_pretrained(model_dir).eval()
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as scratch:
        save_released(model, Path(scratch) / "model")
        write_released_dictionaries(read_dictionary(dictionary_path), read_median_table(medians_path),
                                    Path(scratch) / "model")
        for path in sorted((Path(scratch) / "model").iterdir()):
            os.replace(path, out / path.name)
    return out


def unpack_checkpoint(path, into) -> Path:
    """The released folder of ``path``: the folder itself, or the one holding ``config.json`` inside a
    .tar(.gz) / .zip archive, unpacked into ``into`` (members outside it refused)."""
    import tarfile
    import zipfile

    path, into = Path(path), Path(into)
    if path.is_dir():
        return path
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as archive:
            archive.extractall(into, filter="data")   # refuses absolute paths, .. and links out of `into`
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if Path(member).is_absolute() or ".." in Path(member).parts:
                    raise InputError(path, member, "lies outside the archive's folder", "pass the release's archive")
            archive.extractall(into)
    else:
        raise InputError(path, "checkpoint", "is neither a folder nor a .tar(.gz) / .zip archive",
                         "point model.source.checkpoint at the unpacked GeneCompass_Small / GeneCompass_Base folder")
    found = sorted(config.parent for config in into.rglob("config.json"))
    if not found:
        raise InputError(path, "config.json", "is in no folder of the archive", "pass the release's archive")
    return found[0]


def import_release(checkpoint, token_dictionary, median_files: Mapping[str, str], gene_table_files: Mapping[str, str],
                   out_model, out_dictionary, out_medians, out_report) -> dict:
    """Rule ``import_released``: a released checkpoint and its dictionaries in our formats.

    Writes the model in our Hugging Face format (``from_pretrained``), our token dictionary (with the
    symbols of our gene tables) and median table, and a report: the layout, the dictionary's genes
    and how many have released medians.
    """
    import tempfile

    from genecompass.dictionary import write_dictionary
    from genecompass.model.released import load_released
    from genecompass.utils import atomic_output, write_json

    released = read_token_dictionary(token_dictionary)
    medians = read_medians(dict(median_files), released)
    genes = {species: pd.read_csv(path, sep="\t", keep_default_na=False) for species, path in gene_table_files.items()}
    dictionary = dictionary_from_released(released, genes)
    mask = released.loc[released["token"] == "<mask>", "token_id"]
    with tempfile.TemporaryDirectory() as scratch:
        folder = unpack_checkpoint(checkpoint, scratch)
        model = load_released(folder, mask_token_id=int(mask.iloc[0]) if len(mask) else 1)
        if model.config.vocab_size != len(dictionary):
            raise InputError(token_dictionary, "token ids", f"number {len(dictionary)}, the checkpoint's vocabulary "
                             f"{model.config.vocab_size}", "pass the token dictionary of the same release")
        with atomic_output(out_model) as tmp:
            model.save_pretrained(tmp)
    with atomic_output(out_dictionary) as tmp:
        write_dictionary(dictionary, tmp)
    with atomic_output(out_medians) as tmp:
        medians.to_csv(tmp, sep="\t", index=False, float_format="%.17g")   # exact: shards use these values
    report = {
        "checkpoint": str(checkpoint),
        "config": {key: getattr(model.config, key) for key in ("hidden_size", "num_hidden_layers",
                                                               "num_attention_heads", "knowledge_kinds", "use_values",
                                                               "knowledge_scale")},
        "tokens": int(len(dictionary)),
        "genes": {cls: int(n) for cls, n in dictionary["token_class"].value_counts().items()},
        "medians": {source: int(n) for source, n in medians["median_source"].value_counts().items()},
    }
    write_json(report, out_report)
    return report
