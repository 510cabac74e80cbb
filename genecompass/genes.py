"""Gene tables, human-mouse orthologs and harmonisation of gene identifiers.

The layouts read here are described in docs/formats.md. Every problem with a
user's file is raised as :class:`genecompass.errors.InputError`.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from genecompass.errors import InputError
from genecompass.utils import atomic_output

CORE_BIOTYPES = ("protein_coding", "lncRNA", "miRNA")

SPECIES_PREFIX = {"human": "ENSG", "mouse": "ENSMUSG"}

# An Ensembl gene ID: ENS + optional 3-letter species code + G + 11 digits,
# optionally followed by a version (".17").
_ENSEMBL_ANY = re.compile(r"^ENS(?:[A-Z]{3})?G\d{11}(?:\.\d+)?$")
_ENSEMBL_BY_SPECIES = {
    "human": re.compile(r"^ENSG\d{11}(?:\.\d+)?$"),
    "mouse": re.compile(r"^ENSMUSG\d{11}(?:\.\d+)?$"),
}
# GENCODE writes the Y copy of pseudo-autosomal genes as "ENSG….N_PAR_Y".
_VERSION_SUFFIX = re.compile(r"^(ENS[A-Z]*\d+)\.\d+(?:_PAR_Y)?$")

GENE_TABLE_LAYOUTS = {
    "gene table TSV": ("ensembl_id", "symbol", "biotype"),
    "Ensembl gene-info CSV": ("ensembl_id", "gene_name", "gene_type"),
    "MGI marker report": ("Ensembl Gene ID", "Marker Symbol", "Feature Type"),
}

_MGI_FEATURE_TYPES = {
    "protein coding gene": "protein_coding",
    "lincRNA gene": "lncRNA",
    "miRNA gene": "miRNA",
    "null": "unknown",
    "": "unknown",
}

# The BioMart export names the other species' columns "<Species> gene name" etc.
_ORTHOLOG_OTHER = {"mouse": "Mouse", "human": "Human"}

ORTHOLOG_COLUMNS = ("human_id", "human_symbol", "mouse_id", "mouse_symbol", "homology_type", "confidence")

_MAX_LISTED = 50
# Above this share of (otherwise mapped) input genes, a symptom counts as dominant.
_DOMINANT_FRACTION = 0.5


# --------------------------------------------------------------------------
# Identifier helpers
# --------------------------------------------------------------------------


def _as_str_array(values) -> np.ndarray:
    """Any sequence of identifiers as an object array of str (missing -> "")."""
    if isinstance(values, str):
        values = [values]
    series = pd.Series(np.asarray(values, dtype=object).ravel(), dtype=object)
    return series.where(series.notna(), "").astype(str).to_numpy(dtype=object)


def strip_version(ids):
    """Drop the version suffix of Ensembl IDs ("ENSG00000141510.17" -> "ENSG00000141510").

    Accepts one string or a sequence (list, Index, Series, array); a sequence gives
    an object ndarray. Identifiers that are not versioned Ensembl IDs are
    returned unchanged (symbols such as "AC000061.1" keep their dot).
    """
    if isinstance(ids, str):
        return _VERSION_SUFFIX.sub(r"\1", ids)
    values = _as_str_array(ids)
    return pd.Series(values, dtype=object).str.replace(_VERSION_SUFFIX, r"\1", regex=True).to_numpy(dtype=object)


def looks_like_ensembl(ids, species: str | None = None) -> np.ndarray:
    """Boolean mask: which identifiers are Ensembl gene IDs (of `species`, if given)."""
    if species is None:
        pattern = _ENSEMBL_ANY
    else:
        check_species(species, None)
        pattern = _ENSEMBL_BY_SPECIES[species]
    values = _as_str_array(ids)
    return pd.Series(values, dtype=object).str.match(pattern).to_numpy(dtype=bool)


def is_mitochondrial(symbols) -> np.ndarray:
    """Boolean mask: symbols starting with "MT-" in any case (human MT-CO1, mouse mt-Co1)."""
    values = _as_str_array(symbols)
    return pd.Series(values, dtype=object).str.upper().str.startswith("MT-").to_numpy(dtype=bool)


def check_species(species: str, path) -> None:
    """An input error naming ``path`` unless ``species`` is human or mouse."""
    if species not in SPECIES_PREFIX:
        raise InputError(path, "species", f"unknown species {species!r}",
                         "use 'human' or 'mouse'")


def other_species(species: str) -> str:
    """The other of human and mouse."""
    return "mouse" if species == "human" else "human"


def _species_counts(ids: np.ndarray) -> dict[str, int]:
    return {sp_name: int(looks_like_ensembl(ids, sp_name).sum()) for sp_name in SPECIES_PREFIX}


# --------------------------------------------------------------------------
# Gene tables
# --------------------------------------------------------------------------


def first_line(path) -> str:
    """The first line of a (gzipped) text file, for telling its layout; input errors name the file."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            return handle.readline().rstrip("\r\n")
    except FileNotFoundError:
        raise InputError(path, "path", "file not found",
                         "check the path in the configuration") from None
    except (OSError, EOFError) as exc:
        raise InputError(path, "path", f"cannot read the file ({exc})",
                         "re-download the file or check that it is plain text or gzip") from None


def _layouts_text() -> str:
    return "; ".join(f"{name} ({', '.join(cols)})" for name, cols in GENE_TABLE_LAYOUTS.items())


def _mgi_biotype(feature_type: str) -> str:
    text = feature_type.strip()
    if text in _MGI_FEATURE_TYPES:
        return _MGI_FEATURE_TYPES[text]
    if text.endswith("lncRNA gene"):
        return "lncRNA"
    if text.endswith(" gene"):
        text = text[: -len(" gene")]
    # snake_case that keeps the case of RNA names (snoRNA, rRNA, SRP_RNA).
    return re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_") or "unknown"


def read_gene_table(path: str | os.PathLike, species: str) -> pd.DataFrame:
    """Read a gene table in one of the accepted layouts (see docs/formats.md).

    Returns a DataFrame indexed by `ensembl_id` (no version) with columns
    `symbol` and `biotype`; the first row of a duplicated ID wins.
    """
    check_species(species, path)
    header = first_line(path)
    sep = "\t" if header.count("\t") >= header.count(",") else ","
    columns = [c.strip().strip('"') for c in header.split(sep)]

    # Pick the layout whose columns overlap the header most.
    best_name, best_cols = max(GENE_TABLE_LAYOUTS.items(),
                               key=lambda item: sum(c in columns for c in item[1]))
    missing = [c for c in best_cols if c not in columns]
    if len(missing) == len(best_cols):
        raise InputError(path, "header", f"unknown gene-table layout (header: {header[:200]!r})",
                         f"provide one of the accepted layouts: {_layouts_text()}")
    if missing:
        raise InputError(path, missing[0],
                         f"missing column(s) {missing} for the {best_name} layout",
                         f"add the column(s); accepted layouts: {_layouts_text()}")

    id_col, symbol_col, biotype_col = best_cols
    try:
        # index_col=False: the MGI report ends every data row with a stray tab.
        raw = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, index_col=False,
                          usecols=list(best_cols))
    except (ValueError, OSError, EOFError, pd.errors.ParserError) as exc:
        raise InputError(path, "path", f"cannot parse the gene table ({exc})",
                         f"check the file is a valid {best_name}") from None

    ids = raw[id_col].str.strip()
    keep = (ids != "") & (ids.str.lower() != "null")
    raw = raw[keep]
    ids = strip_version(ids[keep])
    if best_name == "MGI marker report":
        biotypes = [_mgi_biotype(t) for t in raw[biotype_col]]
    else:
        biotypes = [t.strip() or "unknown" for t in raw[biotype_col]]
    table = pd.DataFrame(
        {"symbol": raw[symbol_col].str.strip().to_numpy(dtype=object),
         "biotype": np.asarray(biotypes, dtype=object)},
        index=pd.Index(ids, name="ensembl_id", dtype=object),
    )
    table = table[~table.index.duplicated(keep="first")]
    if table.empty:
        raise InputError(path, id_col, "no rows with an Ensembl gene ID",
                         "check that the file is complete and has Ensembl IDs")

    counts = _species_counts(table.index.to_numpy())
    other = other_species(species)
    if counts[other] > counts[species] and counts[other] > _DOMINANT_FRACTION * len(table):
        raise InputError(path, id_col,
                         f"most IDs have the {other} prefix {SPECIES_PREFIX[other]} "
                         f"but the table was declared {species}",
                         f"use the {species} gene table here (IDs starting with {SPECIES_PREFIX[species]})")
    return table


def write_gene_table(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a gene table in our TSV layout (ensembl_id, symbol, biotype)."""
    out = table[["symbol", "biotype"]].copy()
    out.index = out.index.rename("ensembl_id")
    with atomic_output(path) as tmp:
        out.to_csv(tmp, sep="\t", na_rep="")


# --------------------------------------------------------------------------
# Orthologs
# --------------------------------------------------------------------------


def read_orthologs(path: str | os.PathLike) -> pd.DataFrame:
    """Read an Ensembl BioMart human<->mouse ortholog export (either direction).

    Returns one row per (human, mouse) pair with columns human_id, human_symbol,
    mouse_id, mouse_symbol, homology_type, confidence (float, NaN if absent).
    Genes without an ortholog are dropped. Also reads back the tab-separated
    table that `write_orthologs` writes.
    """
    header = first_line(path)
    if header.split("\t")[: len(ORTHOLOG_COLUMNS)] == list(ORTHOLOG_COLUMNS):
        return _read_ortholog_pairs_tsv(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, OSError, EOFError, pd.errors.ParserError) as exc:
        raise InputError(path, "path", f"cannot parse the ortholog table ({exc})",
                         "provide the BioMart CSV export as downloaded") from None
    columns = [c.strip() for c in raw.columns]
    raw.columns = columns

    if "Mouse gene stable ID" in columns:
        source, target = "human", "mouse"
    elif "Human gene stable ID" in columns:
        source, target = "mouse", "human"
    else:
        raise InputError(path, "Mouse gene stable ID",
                         f"no 'Mouse gene stable ID' or 'Human gene stable ID' column (header: {header[:200]!r})",
                         "export from Ensembl BioMart with the attributes Gene stable ID, Gene name, "
                         "<Species> gene stable ID, <Species> gene name, <Species> homology type and "
                         "<Species> orthology confidence")
    other = _ORTHOLOG_OTHER[target]
    required = ["Gene stable ID", f"{other} gene stable ID", f"{other} homology type"]
    missing = [c for c in required if c not in columns]
    if missing:
        raise InputError(path, missing[0], f"missing column(s) {missing}",
                         "export from Ensembl BioMart including these attributes")

    def column(name: str) -> pd.Series:
        return raw[name].str.strip() if name in columns else pd.Series("", index=raw.index)

    confidence_cols = [c for c in columns if c.startswith(f"{other} orthology confidence")]
    confidence = (pd.to_numeric(raw[confidence_cols[0]], errors="coerce") if confidence_cols
                  else pd.Series(np.nan, index=raw.index))

    pairs = pd.DataFrame({
        f"{source}_id": strip_version(column("Gene stable ID")),
        f"{source}_symbol": column("Gene name").to_numpy(dtype=object),
        f"{target}_id": strip_version(column(f"{other} gene stable ID")),
        f"{target}_symbol": column(f"{other} gene name").to_numpy(dtype=object),
        "homology_type": column(f"{other} homology type").to_numpy(dtype=object),
        "confidence": confidence.astype(float).to_numpy(),
    })
    pairs = pairs[(pairs["human_id"] != "") & (pairs["mouse_id"] != "")]
    pairs = pairs.drop_duplicates(subset=["human_id", "mouse_id"], keep="first")
    return pairs[list(ORTHOLOG_COLUMNS)].reset_index(drop=True)


def _read_ortholog_pairs_tsv(path) -> pd.DataFrame:
    try:
        pairs = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False,
                            usecols=list(ORTHOLOG_COLUMNS))
    except (ValueError, OSError, EOFError, pd.errors.ParserError) as exc:
        raise InputError(path, "path", f"cannot parse the ortholog table ({exc})",
                         "rebuild it with the `orthologs` rule") from None
    pairs["confidence"] = pd.to_numeric(pairs["confidence"], errors="coerce").astype(float)
    pairs = pairs[(pairs["human_id"] != "") & (pairs["mouse_id"] != "")]
    return pairs.reset_index(drop=True)


def write_orthologs(pairs: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write `read_orthologs` output as a tab-separated table (NaN confidence -> empty)."""
    with atomic_output(path) as tmp:
        pairs[list(ORTHOLOG_COLUMNS)].to_csv(tmp, sep="\t", index=False, na_rep="")


# --------------------------------------------------------------------------
# Harmonisation of a count matrix's gene identifiers
# --------------------------------------------------------------------------

_SYMBOL_COLUMNS = ("symbol", "gene_symbols", "gene_symbol", "gene_name", "feature_name")


def _mostly_ensembl(values) -> bool:
    values = _as_str_array(values)
    return len(values) > 0 and looks_like_ensembl(values).mean() > _DOMINANT_FRACTION


def _wrong_species_error(path, species: str, problem: str) -> InputError:
    return InputError(path, "species", problem,
                      "declare the sample's species correctly in the sample sheet")


def _map_ensembl(ids: np.ndarray, gene_table: pd.DataFrame, species: str, path):
    """Target Ensembl ID per input column ("" = dropped) and the IDs not in the table."""
    ids = strip_version(ids)
    counts = _species_counts(ids)
    other = other_species(species)
    if counts[other] > counts[species]:
        raise _wrong_species_error(
            path, species,
            f"{counts[other]} of {len(ids)} gene IDs are {other} ({SPECIES_PREFIX[other]}…) "
            f"but the sample is declared {species}")
    in_table = pd.Index(gene_table.index).get_indexer(ids) >= 0
    right_prefix = looks_like_ensembl(ids, species)
    keep = in_table | right_prefix
    targets = np.where(keep, ids, "").astype(object)
    not_in_table = ids[keep & ~in_table]
    return targets, not_in_table


def _symbol_lookup(symbols: pd.Series) -> dict[str, list[str]]:
    """symbol -> list of Ensembl IDs carrying it (in table order)."""
    frame = pd.DataFrame({"symbol": symbols.to_numpy(dtype=object), "id": symbols.index.to_numpy()})
    frame = frame[frame["symbol"] != ""]
    return frame.groupby("symbol", sort=False)["id"].agg(list).to_dict()


def _map_symbols(symbols: np.ndarray, gene_table: pd.DataFrame, preferred_ids: set[str]):
    """Map symbols to Ensembl IDs ("" = dropped).

    Tried in order: exact, ignoring case, then with dots read as dashes (R's
    make.names turns HLA-A into HLA.A). Returns the targets, the ambiguous
    symbols, and masks of the symbols matched ignoring case / via dashes.
    """
    table_symbols = gene_table["symbol"].fillna("").astype(str)
    exact = _symbol_lookup(table_symbols)
    folded = _symbol_lookup(pd.Series(table_symbols.str.upper().to_numpy(), index=table_symbols.index))

    targets = np.full(len(symbols), "", dtype=object)
    ambiguous: list[str] = []
    case_insensitive = np.zeros(len(symbols), dtype=bool)
    dots_as_dashes = np.zeros(len(symbols), dtype=bool)
    for i, symbol in enumerate(symbols):
        spellings = [symbol, symbol.replace(".", "-")] if "." in symbol else [symbol]
        candidates = None
        for spelling in spellings:
            candidates = exact.get(spelling)
            if candidates is None:
                candidates = folded.get(spelling.upper())
                case_insensitive[i] = candidates is not None
            if candidates is not None:
                dots_as_dashes[i] = spelling is not symbol
                break
        if candidates is None:
            continue
        if len(candidates) > 1 and preferred_ids:
            narrowed = [c for c in candidates if c in preferred_ids]
            candidates = narrowed if len(narrowed) == 1 else candidates
        if len(candidates) > 1:
            ambiguous.append(symbol)
            case_insensitive[i] = dots_as_dashes[i] = False
            continue
        targets[i] = candidates[0]
    return targets, ambiguous, case_insensitive, dots_as_dashes


def symbols_to_ensembl(symbols, gene_table: pd.DataFrame,
                       preferred_ids: Iterable[str] | None = None) -> tuple[np.ndarray, dict]:
    """Map gene symbols to Ensembl IDs through a gene table (from `read_gene_table`).

    Same rules as `harmonize_gene_ids`: exact match, then ignoring case (BEELINE
    writes mouse symbols in upper case), then dots read as dashes. A symbol
    carried by several IDs is ambiguous and left unmapped unless exactly one of
    them is in `preferred_ids`. Each distinct symbol is looked up once.

    Returns an object array aligned with `symbols` ("" = unmapped, ambiguous or
    empty) and a report over the distinct non-empty symbols: n_symbols,
    n_mapped, n_unmapped, unmapped, n_ambiguous, ambiguous, n_case_insensitive,
    n_dots_as_dashes (lists are truncated examples, in order of appearance).
    """
    if "symbol" not in gene_table.columns:
        raise ValueError("gene_table lacks the 'symbol' column; read it with read_gene_table")
    values = pd.Series(_as_str_array(symbols), dtype=object).str.strip()
    codes, distinct = pd.factorize(values, sort=False)
    distinct = np.asarray(distinct, dtype=object)
    preferred = set(strip_version(list(preferred_ids))) if preferred_ids is not None else set()
    # _map_symbols only looks up the queried spellings (exact or upper-cased), so the
    # table rows whose upper-cased symbol matches none of them can go first: building
    # its lookups over a whole gene table dominates the cost otherwise.
    spellings = pd.Series(distinct, dtype=object).str.upper()
    keys = set(spellings) | set(spellings.str.replace(".", "-", regex=False))
    table_upper = gene_table["symbol"].fillna("").astype(str).str.upper()
    candidates = gene_table[table_upper.isin(keys).to_numpy()]
    targets, ambiguous, case_insensitive, dots_as_dashes = _map_symbols(distinct, candidates, preferred)

    nonempty = distinct != ""
    ambiguous_set = set(ambiguous)
    unmapped = [s for s, t in zip(distinct, targets) if s != "" and t == "" and s not in ambiguous_set]
    report = {
        "n_symbols": int(nonempty.sum()),
        "n_mapped": int((targets != "").sum()),
        "n_unmapped": len(unmapped),
        "unmapped": unmapped[:_MAX_LISTED],
        "n_ambiguous": len(ambiguous),
        "ambiguous": ambiguous[:_MAX_LISTED],
        "n_case_insensitive": int(case_insensitive.sum()),
        "n_dots_as_dashes": int(dots_as_dashes.sum()),
    }
    # factorize gives -1 for missing values; _as_str_array already turned those into "".
    return targets[codes].astype(object), report


def _sum_columns(matrix: sp.csr_matrix, targets: np.ndarray):
    """Sum the columns that share a target; returns (CSR matrix, ordered unique targets)."""
    output_ids, column_of_output = np.unique(targets, return_inverse=True)
    # np.unique sorts; restore first-appearance order.
    first_seen = np.full(len(output_ids), len(targets))
    np.minimum.at(first_seen, column_of_output, np.arange(len(targets)))
    order = np.argsort(first_seen, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    output_ids = output_ids[order]
    column_of_output = rank[column_of_output]

    if len(output_ids) == len(targets):
        summed = matrix  # no duplicates: first-appearance order is the input order
    else:
        # A 0/1 aggregation matrix keeps the product sparse and in the input dtype.
        aggregate = sp.csr_matrix(
            (np.ones(len(targets), dtype=matrix.dtype), (np.arange(len(targets)), column_of_output)),
            shape=(len(targets), len(output_ids)),
        )
        summed = matrix @ aggregate
    summed = sp.csr_matrix(summed, dtype=matrix.dtype)
    summed.sort_indices()
    return summed, output_ids


def _map_old_symbols(symbols: np.ndarray, targets: np.ndarray, routes: np.ndarray, skip: set[str],
                     symbol_routes: pd.DataFrame) -> None:
    """Map the still unmapped ``symbols`` through previous, then alias symbols (in place).

    ``symbol_routes`` (``symbol, ensembl_id, route``) holds only names that
    point to one gene (``references.hgnc_symbol_routes``); case and dots read as
    dashes are tolerated as for current symbols.
    """
    for route in ("previous", "alias"):
        chosen = symbol_routes[symbol_routes["route"] == route]
        lookup = dict(zip(chosen["symbol"].str.upper(), chosen["ensembl_id"]))
        for i in np.flatnonzero(targets == ""):
            symbol = symbols[i]
            if symbol in skip or not symbol:
                continue
            for spelling in ([symbol, symbol.replace(".", "-")] if "." in symbol else [symbol]):
                target = lookup.get(spelling.upper())
                if target is not None:
                    targets[i] = target
                    routes[i] = route
                    break


def _route_shares(routes: np.ndarray, umis: np.ndarray) -> dict:
    """Per route: input genes and their share of all UMIs."""
    total = float(umis.sum()) or 1.0
    return {route: {"n_genes": int((routes == route).sum()), "umi_share": float(umis[routes == route].sum() / total)}
            for route in dict.fromkeys(routes)}


def harmonize_gene_ids(adata: AnnData, gene_table: pd.DataFrame, species: str,
                       path: str | os.PathLike | None = None, *,
                       preferred_ids: Iterable[str] | None = None,
                       symbol_routes: pd.DataFrame | None = None) -> tuple[AnnData, dict]:
    """Give `adata` Ensembl gene IDs (no version) as `var_names`, summing duplicates.

    Identifiers come from `var["gene_ids"]` if mostly Ensembl-like, else from
    `var_names` if mostly Ensembl-like, else `var_names` are read as symbols and
    mapped through `gene_table`: exact, then ignoring case, then with dots read
    as dashes (R writes HLA-A as HLA.A). A symbol carried by several Ensembl IDs
    is ambiguous and dropped, unless exactly one of them is in `preferred_ids`
    (e.g. HGNC's primary-assembly IDs: Ensembl gene tables also hold
    alternate-haplotype copies, such as 8 IDs for HLA-A). Symbols still
    unmapped are then looked up among previous symbols, then alias symbols,
    of ``symbol_routes`` (``references.hgnc_symbol_routes``: names of one gene
    only), so a file annotated before a renaming (ATP5E, now ATP5F1E) keeps it.

    Returns the new AnnData (CSR X in the input dtype, obs unchanged, var:
    symbol, biotype) and a report dict; its ``routes`` give, per route
    (``ensembl``, ``current``, ``previous``, ``alias``, ``ambiguous``,
    ``unmapped``), the input genes and their share of the sample's UMIs, and
    ``umi_share_lost`` the share of the last two.
    """
    check_species(species, path)
    missing = [c for c in ("symbol", "biotype") if c not in gene_table.columns]
    if missing:
        raise ValueError(f"gene_table lacks column(s) {missing}; read it with read_gene_table")
    table_counts = _species_counts(gene_table.index.to_numpy())
    other = other_species(species)
    if table_counts[other] > table_counts[species]:
        raise InputError(path, "species",
                         f"the gene table given has {other} IDs ({SPECIES_PREFIX[other]}…) "
                         f"but the sample is declared {species}",
                         f"use the {species} gene table, or declare the sample's species correctly "
                         "in the sample sheet")

    var_names = _as_str_array(adata.var_names)
    n_input = len(var_names)
    ambiguous: list[str] = []
    not_in_table = np.array([], dtype=object)
    found_symbols = None
    n_case_insensitive = 0
    n_dots_as_dashes = 0

    if "gene_ids" in adata.var.columns and _mostly_ensembl(adata.var["gene_ids"]):
        id_source = "gene_ids"
        inputs = _as_str_array(adata.var["gene_ids"])
        targets, not_in_table = _map_ensembl(inputs, gene_table, species, path)
        found_symbols = var_names
    elif _mostly_ensembl(var_names):
        id_source = "var_names"
        inputs = var_names
        targets, not_in_table = _map_ensembl(inputs, gene_table, species, path)
        symbol_col = next((c for c in _SYMBOL_COLUMNS if c in adata.var.columns), None)
        if symbol_col is not None:
            found_symbols = _as_str_array(adata.var[symbol_col])
    else:
        id_source = "symbols"
        inputs = var_names
        preferred = set(strip_version(list(preferred_ids))) if preferred_ids is not None else set()
        targets, ambiguous, case_insensitive, dots_as_dashes = _map_symbols(inputs, gene_table, preferred)
        n_case_insensitive = int(case_insensitive.sum())
        n_dots_as_dashes = int(dots_as_dashes.sum())
        n_mapped_symbols = int((targets != "").sum())
        routes = np.where(targets != "", "current", "unmapped").astype(object)
        # Human symbols are upper case; a human sample whose symbols mostly match
        # only after case-folding carries mouse-style symbols (Gapdh).
        if species == "human" and n_mapped_symbols and n_case_insensitive > _DOMINANT_FRACTION * n_mapped_symbols:
            raise _wrong_species_error(
                path, species,
                f"{n_case_insensitive} of {n_mapped_symbols} mapped gene symbols match human symbols "
                "only when case is ignored (mouse-style symbols such as 'Gapdh')")
        found_symbols = var_names
        if symbol_routes is not None and len(symbol_routes):
            _map_old_symbols(inputs, targets, routes, set(ambiguous), symbol_routes)
    if id_source != "symbols":
        routes = np.where(targets != "", "ensembl", "unmapped").astype(object)
    routes[np.isin(inputs, list(ambiguous)) & (targets == "")] = "ambiguous"

    mapped = targets != ""
    n_mapped = int(mapped.sum())
    ambiguous_set = set(ambiguous)
    unmapped = [s for s, t in zip(inputs, targets) if t == "" and s not in ambiguous_set]
    if n_mapped == 0:
        raise InputError(path, "var_names" if id_source != "gene_ids" else "gene_ids",
                         f"none of the {n_input} gene identifiers ({id_source}) maps to a {species} gene "
                         f"(examples: {list(inputs[:5])})",
                         f"use Ensembl gene IDs or official {species} gene symbols, check the sample's "
                         "species in the sample sheet, and check the gene table")

    matrix = adata.X
    if not sp.issparse(matrix):
        matrix = sp.csr_matrix(np.asarray(matrix))
    umis = np.asarray(sp.csr_matrix(matrix).sum(axis=0, dtype=np.float64)).ravel()
    route_shares = _route_shares(routes, umis)
    matrix = sp.csr_matrix(matrix)[:, np.flatnonzero(mapped)]
    summed, output_ids = _sum_columns(matrix, targets[mapped])

    # Symbol and biotype: from the gene table, else the symbol found in the file.
    in_table = pd.Index(gene_table.index).get_indexer(output_ids)
    table_symbol = gene_table["symbol"].to_numpy(dtype=object)
    table_biotype = gene_table["biotype"].to_numpy(dtype=object)
    first_input = {}
    for position, target in zip(np.flatnonzero(mapped), targets[mapped]):
        first_input.setdefault(target, position)
    symbols, biotypes = [], []
    for gene, row in zip(output_ids, in_table):
        if row >= 0:
            symbols.append(table_symbol[row])
            biotypes.append(table_biotype[row])
        else:
            symbols.append(found_symbols[first_input[gene]] if found_symbols is not None else "")
            biotypes.append("unknown")

    var = pd.DataFrame({"symbol": np.asarray(symbols, dtype=object),
                        "biotype": np.asarray(biotypes, dtype=object)},
                       index=pd.Index(output_ids, dtype=object))
    result = AnnData(X=summed, obs=adata.obs.copy(), var=var, uns=dict(adata.uns),
                     obsm={k: v for k, v in adata.obsm.items()})

    n_output = len(output_ids)
    report = {
        "n_input_genes": n_input,
        "id_source": id_source,
        "n_mapped": n_mapped,
        "n_unmapped": len(unmapped),
        "unmapped": unmapped[:_MAX_LISTED],
        "n_ambiguous": len(ambiguous),
        "ambiguous": ambiguous[:_MAX_LISTED],
        "n_duplicates_summed": n_mapped - n_output,
        "n_output_genes": n_output,
        "n_not_in_gene_table": len(not_in_table),
        "not_in_gene_table": list(not_in_table[:_MAX_LISTED]),
        "n_case_insensitive": n_case_insensitive,
        "n_dots_as_dashes": n_dots_as_dashes,
        # Names used by docs/formats.md.
        "n_ensembl": n_mapped if id_source != "symbols" else 0,
        "n_symbols_mapped": n_mapped if id_source == "symbols" else 0,
        "n_previous_symbol": int((routes == "previous").sum()),
        "n_alias_symbol": int((routes == "alias").sum()),
        "routes": route_shares,
        "umi_share_lost": float(sum(route_shares.get(r, {}).get("umi_share", 0.0)
                                    for r in ("unmapped", "ambiguous"))),
    }
    return result, report
