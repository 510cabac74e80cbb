"""Public reference files turned into the tables the knowledge rules use.

GeneCompass embeds four kinds of prior knowledge per gene (paper, "Knowledge
embedding and incorporation"). This module reads the public files behind
three of them (downloads with checksums: :mod:`genecompass.downloads`):

- TF -> target networks (TRRUST v2, DoRothEA, ReMap/generic, BEELINE):
  `read_network`, `read_networks`;
- gene families from HGNC, carried to mouse through orthologs:
  `read_gene_groups`, `mouse_gene_groups`;
- promoter sequences: EPDnew files (`read_epd_promoters`) or 500 bases
  upstream + 2,000 downstream of each TSS cut from a genome and a GTF
  (`extract_promoters`), and FASTA helpers.

Readers that produce a table attach their counts (mapped, dropped, ...) as
``table.attrs["report"]`` and log them. Every problem with a user's file is an
:class:`genecompass.errors.InputError`.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from genecompass.errors import InputError
from genecompass.genes import (
    check_species,
    first_line,
    looks_like_ensembl,
    other_species,
    strip_version,
    symbols_to_ensembl,
)
from genecompass.utils import atomic_output

logger = logging.getLogger(__name__)

_MAX_LISTED = 20


# --------------------------------------------------------------------------
# TF -> target networks
# --------------------------------------------------------------------------

NETWORK_COLUMNS = ("source_id", "target_id", "source_symbol", "target_symbol", "sign")

NETWORK_LAYOUTS = {
    "trrust": "TRRUST v2 (TF, gene_symbol[, interaction, position]; also the official headerless file)",
    "dorothea": "DoRothEA (tf, [confidence,] target, mor)",
    "generic": "ReMap/generic (tf, target  or  source, target[, mode|sign])",
    "beeline": "BEELINE (Gene1, Gene2[, Type])",
}
_LAYOUT_ALIASES = {"remap": "generic"}
_REQUIRED_COLUMNS = {
    "trrust": ("TF", "gene_symbol"),
    "dorothea": ("tf", "target", "mor"),
    "generic": ("source", "target"),
    "beeline": ("Gene1", "Gene2"),
}
# Columns that may carry the sign of a generic network, in order of preference.
_SIGN_COLUMNS = ("mode", "sign", "interaction", "type", "mor", "effect", "regulation")
_TRRUST_INTERACTIONS = {"activation", "repression", "unknown"}

_POSITIVE = {"activation", "activator", "activating", "activates", "activate", "positive", "+",
             "up", "induction", "stimulation"}
_NEGATIVE = {"repression", "repressor", "repressing", "represses", "repress", "negative", "-",
             "down", "inhibition", "inhibitory"}
_UNKNOWN = {"", "unknown", "na", "nan", "none", "?", ".", "0"}


def _layouts_text() -> str:
    return "; ".join(NETWORK_LAYOUTS.values())


def _network_spec(path, layout: str) -> dict:
    """Where a network file keeps its source, target and sign columns."""
    line = first_line(path)
    if not line.strip():
        raise InputError(path, "header", "the file is empty",
                         f"provide a network in one of the accepted layouts: {_layouts_text()}")
    sep = "\t" if "\t" in line else ","
    fields = [f.strip().strip('"') for f in line.split(sep)]
    by_lower = {f.lower(): f for f in fields}

    def spec(name, source, target, sign, header=True):
        return {"layout": name, "sep": sep, "header": header, "source": source, "target": target,
                "sign": sign}

    def match(name):
        if name == "beeline" and {"gene1", "gene2"} <= by_lower.keys():
            return spec(name, by_lower["gene1"], by_lower["gene2"], by_lower.get("type"))
        if name == "trrust":
            if {"tf", "gene_symbol"} <= by_lower.keys():
                return spec(name, by_lower["tf"], by_lower["gene_symbol"], by_lower.get("interaction"))
            # The official download has no header: TF, target, interaction, PubMed IDs.
            if len(fields) >= 3 and fields[2].lower() in _TRRUST_INTERACTIONS:
                return spec(name, 0, 1, 2, header=False)
        if name == "dorothea" and {"tf", "target", "mor"} <= by_lower.keys():
            return spec(name, by_lower["tf"], by_lower["target"], by_lower["mor"])
        if name == "generic" and "target" in by_lower.keys():
            source = by_lower.get("source") or by_lower.get("tf")
            if source is not None:
                sign = next((by_lower[c] for c in _SIGN_COLUMNS if c in by_lower), None)
                return spec(name, source, by_lower["target"], sign)
        return None

    if layout == "auto":
        for name in ("beeline", "trrust", "dorothea", "generic"):
            found = match(name)
            if found is not None:
                return found
        raise InputError(path, "header", f"unknown network layout (first line: {line[:200]!r})",
                         f"provide one of the accepted layouts: {_layouts_text()}")
    name = _LAYOUT_ALIASES.get(layout, layout)
    if name not in NETWORK_LAYOUTS:
        raise InputError(path, "layout", f"unknown network layout {layout!r}",
                         f"use 'auto' or one of {sorted(NETWORK_LAYOUTS) + sorted(_LAYOUT_ALIASES)}")
    found = match(name)
    if found is None:
        missing = [c for c in _REQUIRED_COLUMNS[name] if c.lower() not in by_lower]
        if name == "generic" and "tf" in by_lower:
            missing = [c for c in missing if c != "source"]
        raise InputError(path, missing[0] if missing else "header",
                         f"the header {fields[:8]} lacks column(s) {missing} of the {NETWORK_LAYOUTS[name]} layout",
                         f"add the column(s) or pick the matching layout; accepted layouts: {_layouts_text()}")
    return found


def _parse_signs(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """+1 activation / -1 repression / 0 unknown, from words, +/- or numbers (DoRothEA mor)."""
    text = values.astype(str).str.strip().str.lower()
    numeric = pd.to_numeric(text, errors="coerce")
    signs = np.sign(numeric.fillna(0).to_numpy()).astype(np.int8)
    positive = text.isin(_POSITIVE).to_numpy()
    negative = text.isin(_NEGATIVE).to_numpy()
    signs[positive] = 1
    signs[negative] = -1
    unrecognised = ~(numeric.notna().to_numpy() | positive | negative | text.isin(_UNKNOWN).to_numpy())
    return signs, list(pd.unique(values[unrecognised]))[:_MAX_LISTED]


def _read_network_columns(path, spec: dict) -> pd.DataFrame:
    columns = [spec["source"], spec["target"]] + ([spec["sign"]] if spec["sign"] is not None else [])
    try:
        raw = pd.read_csv(path, sep=spec["sep"], dtype=str, keep_default_na=False,
                          header=0 if spec["header"] else None, usecols=columns, index_col=False)
    except (ValueError, OSError, EOFError, pd.errors.ParserError) as exc:
        raise InputError(path, "path", f"cannot parse the network ({exc})",
                         f"check the file is a valid {NETWORK_LAYOUTS[spec['layout']]} table") from None
    frame = pd.DataFrame({
        "source": raw[spec["source"]].str.strip().to_numpy(dtype=object),
        "target": raw[spec["target"]].str.strip().to_numpy(dtype=object),
    })
    frame["sign_text"] = raw[spec["sign"]].to_numpy(dtype=object) if spec["sign"] is not None else ""
    return frame


def _map_nodes(names: np.ndarray, gene_table: pd.DataFrame, species: str, path,
               preferred_ids) -> tuple[dict[str, str], dict]:
    """Ensembl ID for each distinct node name ("" = unmapped) and the symbol report."""
    is_id = looks_like_ensembl(names, species)
    other_ids = looks_like_ensembl(names, other_species(species))
    if other_ids.sum() > max(is_id.sum(), 0.5 * len(names)):
        raise InputError(path, "species",
                         f"{int(other_ids.sum())} of {len(names)} genes are {other_species(species)} "
                         f"Ensembl IDs but the network was declared {species}",
                         "use the network of the right species, or declare its species correctly")
    symbols = np.where(is_id | other_ids, "", names).astype(object)
    mapped, report = symbols_to_ensembl(symbols, gene_table, preferred_ids)
    ids = np.where(is_id, strip_version(names), mapped).astype(object)
    # Human symbols are upper case: mostly case-insensitive matches mean a mouse network.
    if species == "human" and report["n_mapped"] and \
            report["n_case_insensitive"] > 0.5 * report["n_mapped"]:
        raise InputError(path, "species",
                         f"{report['n_case_insensitive']} of {report['n_mapped']} mapped symbols match "
                         "human symbols only when case is ignored (mouse-style symbols such as 'Gapdh')",
                         "use the human network here, or declare the network as mouse")
    return dict(zip(names, ids)), report


def _symbol_of(gene_table: pd.DataFrame) -> pd.Series:
    symbols = gene_table["symbol"].fillna("").astype(str)
    symbols = symbols[~symbols.index.duplicated(keep="first")]
    return symbols[symbols != ""]


def read_network(path: str | os.PathLike, gene_table: pd.DataFrame, species: str,
                 layout: str = "auto", preferred_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """Read a TF -> target network as Ensembl-ID edges.

    Layouts (see NETWORK_LAYOUTS) are detected from the first line, tab- or
    comma-separated. Gene symbols are mapped through `gene_table` (from
    `genes.read_gene_table`; exact, then ignoring case, so BEELINE's
    upper-cased mouse symbols map); Ensembl IDs of `species` are used as they
    are. Edges with an unmapped end and self-loops are dropped; duplicated
    edges are merged, their sign +1/-1 when the known signs agree, 0 when they
    conflict or are all unknown.

    Returns a DataFrame with columns source_id, target_id, source_symbol,
    target_symbol (official symbol, else the file's name), sign (int8);
    ``attrs["report"]`` holds the counts.
    """
    check_species(species, path)
    if "symbol" not in gene_table.columns:
        raise ValueError("gene_table lacks the 'symbol' column; read it with read_gene_table")
    spec = _network_spec(path, layout)
    raw = _read_network_columns(path, spec)
    n_input = len(raw)
    if n_input == 0:
        raise InputError(path, spec["source"] if spec["header"] else "rows", "the network has no edges",
                         "check that the file is complete")

    signs, unrecognised = _parse_signs(pd.Series(raw["sign_text"]))
    names = pd.unique(pd.concat([raw["source"], raw["target"]], ignore_index=True))
    names = np.asarray(names, dtype=object)
    id_of, symbol_report = _map_nodes(names, gene_table, species, path, preferred_ids)

    edges = pd.DataFrame({
        "source_id": raw["source"].map(id_of).to_numpy(dtype=object),
        "target_id": raw["target"].map(id_of).to_numpy(dtype=object),
        "source_name": raw["source"].to_numpy(dtype=object),
        "target_name": raw["target"].to_numpy(dtype=object),
        "sign": signs,
    })
    mapped = (edges["source_id"] != "") & (edges["target_id"] != "")
    n_mapped = int(mapped.sum())
    if n_mapped == 0:
        raise InputError(path, "source/target",
                         f"none of the {n_input} edges has both genes mapped to {species} genes "
                         f"(examples: {list(names[:5])})",
                         f"check the network's species and the {species} gene table")
    edges = edges[mapped]
    self_loop = edges["source_id"] == edges["target_id"]
    edges = edges[~self_loop]

    # Merge duplicated edges: pos - neg gives +1, -1, or 0 for conflicting/unknown.
    keys = [edges["source_id"], edges["target_id"]]
    positive = (edges["sign"] > 0).groupby(keys, sort=False).transform("any")
    negative = (edges["sign"] < 0).groupby(keys, sort=False).transform("any")
    edges = edges.assign(sign=(positive.astype(np.int8) - negative.astype(np.int8)).astype(np.int8))
    n_conflicting = int((positive & negative)[~edges.duplicated(["source_id", "target_id"])].sum())
    n_before = len(edges)
    edges = edges.drop_duplicates(["source_id", "target_id"], keep="first")

    official = _symbol_of(gene_table)
    result = pd.DataFrame({
        "source_id": edges["source_id"].to_numpy(dtype=object),
        "target_id": edges["target_id"].to_numpy(dtype=object),
        "source_symbol": edges["source_id"].map(official).fillna(edges["source_name"]).to_numpy(dtype=object),
        "target_symbol": edges["target_id"].map(official).fillna(edges["target_name"]).to_numpy(dtype=object),
        "sign": edges["sign"].to_numpy(dtype=np.int8),
    })
    report = {
        "path": str(path),
        "layout": spec["layout"],
        "species": species,
        "n_input_edges": n_input,
        "n_mapped_edges": n_mapped,
        "fraction_mapped": round(n_mapped / n_input, 4),
        "n_unmapped_edges": n_input - n_mapped,
        "n_self_loops": int(self_loop.sum()),
        "n_duplicates": n_before - len(result),
        "n_conflicting_signs": n_conflicting,
        "n_edges": len(result),
        "n_sources": int(result["source_id"].nunique()),
        "n_targets": int(result["target_id"].nunique()),
        "n_activation": int((result["sign"] > 0).sum()),
        "n_repression": int((result["sign"] < 0).sum()),
        "n_unknown_sign": int((result["sign"] == 0).sum()),
        "unrecognised_signs": unrecognised,
        "genes": symbol_report,
    }
    result.attrs["report"] = report
    logger.info("%s: %s layout, %d of %d edges mapped, %d kept (%d self-loops, %d duplicates dropped); "
                "%d symbols unmapped, %d ambiguous", path, spec["layout"], n_mapped, n_input, len(result),
                report["n_self_loops"], report["n_duplicates"], symbol_report["n_unmapped"],
                symbol_report["n_ambiguous"])
    if unrecognised:
        logger.warning("%s: unrecognised sign values read as unknown: %s", path, unrecognised)
    return result


def network_name(path: str | os.PathLike) -> str:
    """A network's default name: the file name without .gz/.tsv/.csv/.txt."""
    name = Path(path).name
    for suffix in (".gz", ".tsv", ".csv", ".txt"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def _network_entries(entries) -> list[tuple[str, str, str | None]]:
    """(name, path, layout) for each entry of `read_networks`."""
    if isinstance(entries, (str, os.PathLike)):
        entries = [entries]
    items: list[tuple[str | None, object]]
    if isinstance(entries, Mapping):
        items = [(str(name), value) for name, value in entries.items()]
    else:
        items = [(None, value) for value in entries]
    result = []
    for name, value in items:
        layout = None
        if isinstance(value, Mapping):
            if "path" not in value:
                raise InputError(None, "path", f"network entry {value!r} has no 'path'",
                                 "give each network as a path or {path: ..., name: ..., layout: ...}")
            name = str(value.get("name") or name or network_name(value["path"]))
            layout = value.get("layout")
            value = value["path"]
        result.append((name or network_name(value), str(value), layout))
    names = [name for name, _, _ in result]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise InputError(None, "network", f"several networks are named {duplicated}",
                         "give the networks distinct names (mapping keys or 'name')")
    if not result:
        raise InputError(None, "networks", "no network files given", "list at least one network file")
    return result


def read_networks(entries, gene_table: pd.DataFrame, species: str, layout: str = "auto",
                  preferred_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """Read several networks (the paper used 76 human and 84 mouse GRNs) into one table.

    `entries`: a path, a list of paths or ``{path, name, layout}`` mappings, or
    a mapping name -> path. Names default to the file name without extensions.
    Returns `read_network`'s columns preceded by `network`; edges shared by
    several networks are kept once per network. ``attrs["report"]`` holds
    n_networks, n_edges, n_distinct_edges and each network's report.
    """
    preferred = list(preferred_ids) if preferred_ids is not None else None
    tables, reports = [], {}
    for name, path, entry_layout in _network_entries(entries):
        table = read_network(path, gene_table, species, layout=entry_layout or layout,
                             preferred_ids=preferred)
        reports[name] = table.attrs.pop("report")
        tables.append(table.assign(network=name))
    combined = pd.concat(tables, ignore_index=True)[["network", *NETWORK_COLUMNS]]
    combined.attrs["report"] = {
        "n_networks": len(tables),
        "n_edges": len(combined),
        "n_distinct_edges": int((~combined.duplicated(["source_id", "target_id"])).sum()),
        "networks": reports,
    }
    return combined


# --------------------------------------------------------------------------
# Gene families
# --------------------------------------------------------------------------

GENE_GROUP_COLUMNS = ("ensembl_id", "symbol", "group_id", "group_name")
_HGNC_COLUMNS = ("symbol", "gene_group", "gene_group_id", "ensembl_gene_id")
_HGNC_LAYOUT = ("HGNC complete set (tab-separated; symbol, gene_group and gene_group_id as "
                "'|'-joined lists, ensembl_gene_id)")


def summarize_gene_groups(groups: pd.DataFrame) -> dict:
    """Counts of a gene-group table: groups, genes, memberships, groups with >= 2 genes."""
    sizes = groups.groupby("group_id")["ensembl_id"].nunique()
    return {
        "n_groups": int(len(sizes)),
        "n_groups_with_pairs": int((sizes >= 2).sum()),
        "n_genes": int(groups["ensembl_id"].nunique()),
        "n_memberships": int(len(groups)),
    }


def read_gene_groups(path: str | os.PathLike) -> pd.DataFrame:
    """Gene families from the HGNC complete set: one row per gene x group.

    Returns columns ensembl_id (no version), symbol, group_id (str), group_name.
    Genes without an Ensembl ID or without a group are dropped.
    """
    header = first_line(path)
    columns = [c.strip().strip('"') for c in header.split("\t")]
    missing = [c for c in _HGNC_COLUMNS if c not in columns]
    if missing:
        raise InputError(path, missing[0], f"missing column(s) {missing} (header starts {columns[:6]})",
                         f"download the {_HGNC_LAYOUT}, e.g. hgnc_complete_set.txt from genenames.org")
    try:
        raw = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, usecols=list(_HGNC_COLUMNS),
                          index_col=False)
    except (ValueError, OSError, EOFError, pd.errors.ParserError) as exc:
        raise InputError(path, "path", f"cannot parse the gene-group table ({exc})",
                         f"check the file is the {_HGNC_LAYOUT}") from None

    raw = raw.apply(lambda column: column.str.strip())
    raw = raw[(raw["ensembl_gene_id"] != "") & (raw["gene_group_id"] != "")]
    names = raw["gene_group"].str.split("|")
    ids = raw["gene_group_id"].str.split("|")
    mismatch = names.str.len() != ids.str.len()
    if mismatch.any():
        example = raw.loc[mismatch.idxmax()]
        raise InputError(path, "gene_group_id",
                         f"{int(mismatch.sum())} genes list a different number of group names and IDs "
                         f"(e.g. {example['symbol']}: {example['gene_group']!r} vs {example['gene_group_id']!r})",
                         "re-download the HGNC file; gene_group and gene_group_id must be parallel lists")
    members = pd.DataFrame({
        "ensembl_id": strip_version(raw["ensembl_gene_id"]),
        "symbol": raw["symbol"].to_numpy(dtype=object),
        "group_id": ids.to_numpy(dtype=object),
        "group_name": names.to_numpy(dtype=object),
    }).explode(["group_id", "group_name"], ignore_index=True)
    members["group_id"] = members["group_id"].astype(str).str.strip()
    members["group_name"] = members["group_name"].astype(str).str.strip()
    members = members[members["group_id"] != ""].drop_duplicates(["ensembl_id", "group_id"])
    members = members.reset_index(drop=True)
    if members.empty:
        raise InputError(path, "gene_group_id", "no gene has both an Ensembl ID and a gene group",
                         f"check the file is the complete {_HGNC_LAYOUT}")
    members.attrs["report"] = summarize_gene_groups(members)
    logger.info("%s: %s", path, members.attrs["report"])
    return members


def mouse_gene_groups(human_groups: pd.DataFrame, orthologs: pd.DataFrame,
                      homology_types: Iterable[str] = ("ortholog_one2one", "ortholog_one2many")
                      ) -> pd.DataFrame:
    """Mouse gene families derived from human ones through orthologs (as in the paper).

    A mouse gene joins the families of each of its human orthologs of an
    accepted homology type (one-to-one and one-to-many by default). `orthologs`
    is `genes.read_orthologs` output. Returns `read_gene_groups`' columns.
    """
    missing = [c for c in ("human_id", "mouse_id", "mouse_symbol", "homology_type") if c not in orthologs]
    if missing:
        raise InputError(None, missing[0], f"the ortholog table lacks column(s) {missing}",
                         "read the orthologs with genecompass.genes.read_orthologs")
    missing = [c for c in GENE_GROUP_COLUMNS if c not in human_groups]
    if missing:
        raise InputError(None, missing[0], f"the human gene-group table lacks column(s) {missing}",
                         "read it with genecompass.references.read_gene_groups")
    accepted = orthologs[orthologs["homology_type"].isin(list(homology_types)) & (orthologs["mouse_id"] != "")]
    pairs = accepted[["human_id", "mouse_id", "mouse_symbol"]].drop_duplicates(["human_id", "mouse_id"])
    joined = human_groups.merge(pairs, left_on="ensembl_id", right_on="human_id", how="inner")
    mouse = pd.DataFrame({
        "ensembl_id": joined["mouse_id"].to_numpy(dtype=object),
        "symbol": joined["mouse_symbol"].fillna("").to_numpy(dtype=object),
        "group_id": joined["group_id"].to_numpy(dtype=object),
        "group_name": joined["group_name"].to_numpy(dtype=object),
    }).drop_duplicates(["ensembl_id", "group_id"]).reset_index(drop=True)
    mouse.attrs["report"] = summarize_gene_groups(mouse)
    logger.info("mouse gene groups from %d human groups: %s",
                human_groups["group_id"].nunique(), mouse.attrs["report"])
    return mouse


def species_gene_groups(hgnc_path, species: str, orthologs_path, out_path) -> pd.DataFrame:
    """Rule ``gene_families``: HGNC's gene groups for human, carried to mouse through the orthologs."""
    from genecompass.genes import read_orthologs

    groups = read_gene_groups(hgnc_path)
    if species == "mouse":
        groups = mouse_gene_groups(groups, read_orthologs(orthologs_path))
    logger.info("gene groups: %s", summarize_gene_groups(groups))
    with atomic_output(out_path) as tmp:
        groups.to_csv(tmp, sep="\t", index=False)
    return groups

# --------------------------------------------------------------------------
# FASTA and promoters
# --------------------------------------------------------------------------

# Complement of IUPAC nucleotide codes (S, W and N are their own complement).
_COMPLEMENT = bytes.maketrans(b"ACGTRYKMBVDHSWN", b"TGCAYRMKVBHDSWN")


def reverse_complement(sequence: str) -> str:
    """Reverse complement of an upper-case nucleotide sequence (IUPAC codes kept)."""
    return sequence.encode("ascii").translate(_COMPLEMENT)[::-1].decode("ascii")


def _open_binary(path):
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _fasta_records(path, wanted=None) -> Iterator[tuple[str, str, bytearray | None]]:
    """Stream (id, header, upper-case sequence) records, one at a time.

    Only records for which ``wanted(id)`` is true keep their sequence (others
    yield None), so a genome can be scanned holding one chromosome at most.
    """
    first_line(path)  # a missing or unreadable file is an InputError
    name = None
    header = ""
    sequence = bytearray()
    keep = False
    with _open_binary(path) as handle:
        for number, line in enumerate(handle, start=1):
            if line.startswith(b">"):
                if name is not None:
                    yield name, header, sequence if keep else None
                header = line[1:].decode("utf-8", errors="replace").strip()
                name = header.split(maxsplit=1)[0] if header else ""
                if not name:
                    raise InputError(path, "header", f"line {number}: a '>' header without an identifier",
                                     "give every record an identifier after '>'")
                keep = wanted is None or wanted(name)
                sequence = bytearray()
            elif name is None:
                if line.strip():
                    raise InputError(path, "header", f"line {number}: sequence before the first '>' header",
                                     "provide a FASTA file: each record starts with a '>ID' line")
            elif keep:
                sequence += line.strip().upper()
    if name is not None:
        yield name, header, sequence if keep else None


def iter_fasta(path: str | os.PathLike) -> Iterator[tuple[str, str, str]]:
    """Stream (id, description, sequence) from a FASTA file (gz allowed).

    The id is the header's first word, the description the rest; sequences
    are upper case with line breaks removed.
    """
    for name, header, sequence in _fasta_records(path):
        parts = header.split(maxsplit=1)
        yield name, parts[1] if len(parts) > 1 else "", sequence.decode("ascii", errors="replace")


def read_fasta(path: str | os.PathLike) -> dict[str, str]:
    """All records of a FASTA file as {id: upper-case sequence} (id = header's first word)."""
    records: dict[str, str] = {}
    for name, _, sequence in iter_fasta(path):
        if name in records:
            raise InputError(path, "header", f"the identifier {name!r} appears more than once",
                             "give each record a unique identifier, or read the file with "
                             "read_promoters_fasta, which keeps repeated gene IDs")
        records[name] = sequence
    if not records:
        raise InputError(path, "header", "no FASTA record found",
                         "provide a FASTA file: each record starts with a '>ID' line")
    return records


def read_promoters_fasta(path: str | os.PathLike) -> pd.DataFrame:
    """A promoter FASTA (``>ENSEMBL_ID SYMBOL``) as DataFrame(ensembl_id, symbol, sequence).

    Unlike `read_fasta`, a gene may have several records (EPD lists several
    promoters per gene).
    """
    rows = [(name, description.split(maxsplit=1)[0] if description else "", sequence)
            for name, description, sequence in iter_fasta(path)]
    if not rows:
        raise InputError(path, "header", "no FASTA record found",
                         "provide a FASTA file: each record starts with a '>ID' line")
    table = pd.DataFrame(rows, columns=["ensembl_id", "symbol", "sequence"])
    table["ensembl_id"] = strip_version(table["ensembl_id"])
    return table


def write_promoters_fasta(table: pd.DataFrame, path: str | os.PathLike, line_width: int = 60) -> None:
    """Write promoters as FASTA records ``>ENSEMBL_ID SYMBOL`` (lines of `line_width`).

    The second header word is the `symbol` column, else `promoter_id` (EPD
    tables), else nothing. Written atomically.
    """
    if "ensembl_id" not in table or "sequence" not in table:
        raise ValueError("the promoter table needs 'ensembl_id' and 'sequence' columns")
    label_column = next((c for c in ("symbol", "promoter_id") if c in table), None)
    labels = table[label_column].fillna("").astype(str) if label_column else pd.Series("", index=table.index)
    with atomic_output(path) as tmp, open(tmp, "w") as out:
        for gene, label, sequence in zip(table["ensembl_id"], labels, table["sequence"]):
            out.write(f">{gene} {label}\n" if label else f">{gene}\n")
            for start in range(0, len(sequence), line_width):
                out.write(sequence[start:start + line_width])
                out.write("\n")


_NUCLEOTIDES = re.compile(r"^[ACGTNRYKMSWBDHV]+$", re.IGNORECASE)


def _read_two_columns(path, second: str, valid) -> tuple[pd.DataFrame, int]:
    """A headerless two-column EPD file (promoter_id, `second`); rows failing `valid` dropped."""
    first_line(path)
    try:
        raw = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, keep_default_na=False,
                          names=["promoter_id", second], usecols=[0, 1], index_col=False)
    except (ValueError, OSError, EOFError, pd.errors.ParserError) as exc:
        raise InputError(path, second, f"cannot parse the EPD file ({exc})",
                         f"provide the EPDnew two-column file: PROMOTER_ID <tab> {second}") from None
    ok = np.asarray(valid(raw[second]), dtype=bool)
    return raw[ok].reset_index(drop=True), int((~ok).sum())


def read_epd_promoters(sequence_path: str | os.PathLike, ensembl_path: str | os.PathLike) -> pd.DataFrame:
    """EPDnew promoters per Ensembl gene: DataFrame(ensembl_id, promoter_id, sequence).

    `sequence_path`: ``PROMOTER_ID  sequence`` lines (or a FASTA whose header's
    first word is the promoter ID); `ensembl_path`: ``PROMOTER_ID  ENSG…``
    lines. A gene may have several promoters (all kept: its embedding pools
    them); a PAR promoter may belong to two genes. Sequences are upper case.
    """
    if first_line(sequence_path).startswith(">"):
        sequences = pd.DataFrame(list(read_fasta(sequence_path).items()), columns=["promoter_id", "sequence"])
        n_bad_sequences = 0
    else:
        sequences, n_bad_sequences = _read_two_columns(sequence_path, "sequence",
                                                       lambda values: values.str.match(_NUCLEOTIDES))
    if sequences.empty:
        raise InputError(sequence_path, "sequence", "no promoter sequence found",
                         "provide the EPDnew sequence file: PROMOTER_ID <tab> sequence")
    links, n_bad_links = _read_two_columns(ensembl_path, "ensembl_id",
                                           looks_like_ensembl)
    if links.empty:
        raise InputError(ensembl_path, "ensembl_id", "no Ensembl gene ID in the second column",
                         "provide the EPDnew Ensembl file: PROMOTER_ID <tab> ENSG…")

    sequences = sequences.drop_duplicates("promoter_id")
    links = links.assign(ensembl_id=strip_version(links["ensembl_id"])).drop_duplicates()
    table = links.merge(sequences, on="promoter_id", how="inner")
    table = pd.DataFrame({
        "ensembl_id": table["ensembl_id"].to_numpy(dtype=object),
        "promoter_id": table["promoter_id"].to_numpy(dtype=object),
        "sequence": table["sequence"].str.upper().to_numpy(dtype=object),
    })
    if table.empty:
        raise InputError(ensembl_path, "promoter_id", "no promoter ID is shared with the sequence file",
                         "use the sequence and Ensembl files of the same EPDnew release")
    table.attrs["report"] = {
        "n_promoters": int(table["promoter_id"].nunique()),
        "n_rows": len(table),
        "n_genes": int(table["ensembl_id"].nunique()),
        "n_links_without_sequence": int((~links["promoter_id"].isin(sequences["promoter_id"])).sum()),
        "n_sequences_without_gene": int((~sequences["promoter_id"].isin(links["promoter_id"])).sum()),
        "n_rows_skipped": n_bad_sequences + n_bad_links,  # headers or malformed lines
    }
    logger.info("EPD promoters: %s", table.attrs["report"])
    return table


_GENE_ID = re.compile(r'gene_id\s+"([^"]+)"')
_GENE_NAME = re.compile(r'gene_name\s+"([^"]*)"')
_CANONICAL = re.compile(r'tag\s+"Ensembl_canonical"')


def _read_gtf_tss(gtf) -> tuple[pd.DataFrame, int]:
    """One TSS per gene: DataFrame(ensembl_id, symbol, chrom, strand, tss) with 0-based tss,
    and the number of genes whose TSS comes from a canonical transcript.

    The TSS is the gene record's start (+) or end (-), or that of its
    transcript tagged Ensembl_canonical when there is one. A GTF without gene
    records falls back to each gene's transcript span.
    """
    first_line(gtf)
    genes: dict[str, list] = {}        # gene_id -> [symbol, chrom, strand, start, end]
    canonical: dict[str, tuple] = {}   # gene_id -> (start, end) of its canonical transcript
    spans: dict[str, list] = {}        # fallback: gene_id -> [symbol, chrom, strand, min start, max end]
    with _open_binary(gtf) as handle:
        for number, raw_line in enumerate(handle, start=1):
            if raw_line.startswith(b"#") or not raw_line.strip():
                continue
            fields = raw_line.rstrip(b"\r\n").split(b"\t")
            if len(fields) != 9:
                raise InputError(gtf, "line", f"line {number}: {len(fields)} tab-separated fields instead of 9",
                                 "provide a GTF file (Ensembl or GENCODE annotation)")
            if fields[2] not in (b"gene", b"transcript"):  # skip exons etc. before decoding
                continue
            chrom, _, feature, start, end, _, strand, _, attributes = (
                field.decode("utf-8", errors="replace") for field in fields)
            gene_match = _GENE_ID.search(attributes)
            if gene_match is None:
                raise InputError(gtf, "gene_id", f"line {number}: a {feature} record without gene_id",
                                 "provide a GTF (not GFF3) with gene_id attributes")
            gene_id = gene_match.group(1)
            try:
                start_pos, end_pos = int(start), int(end)
            except ValueError:
                raise InputError(gtf, "start/end", f"line {number}: non-integer coordinates {start!r}, {end!r}",
                                 "provide a valid GTF file") from None
            name_match = _GENE_NAME.search(attributes)
            symbol = name_match.group(1) if name_match else ""
            if feature == "gene":
                genes.setdefault(gene_id, [symbol, chrom, strand, start_pos, end_pos])
            else:
                if _CANONICAL.search(attributes):
                    canonical.setdefault(gene_id, (start_pos, end_pos))
                span = spans.setdefault(gene_id, [symbol, chrom, strand, start_pos, end_pos])
                span[3] = min(span[3], start_pos)
                span[4] = max(span[4], end_pos)
    source = genes or spans
    if not source:
        raise InputError(gtf, "feature", "no gene or transcript record found",
                         "provide a GTF file (Ensembl or GENCODE annotation)")
    table = pd.DataFrame.from_dict(source, orient="index", columns=["symbol", "chrom", "strand", "start", "end"])
    table.index.name = "gene_id"
    table = table.reset_index()
    chosen = table["gene_id"].map(canonical)
    has_canonical = chosen.notna()
    if has_canonical.any():
        table.loc[has_canonical, "start"] = [s for s, _ in chosen[has_canonical]]
        table.loc[has_canonical, "end"] = [e for _, e in chosen[has_canonical]]
    table["tss"] = np.where(table["strand"] == "-", table["end"], table["start"]) - 1
    table["ensembl_id"] = strip_version(table["gene_id"])
    table = table[table["strand"].isin(["+", "-"])]
    # GENCODE's PAR_Y copies share the ID of the X copy once the suffix is gone.
    table = table.drop_duplicates("ensembl_id", keep="first")
    columns = ["ensembl_id", "symbol", "chrom", "strand", "tss"]
    return table[columns].reset_index(drop=True), int(has_canonical.sum())


def _chromosome_aliases(name: str) -> list[str]:
    """Names a chromosome may carry in the other naming style (Ensembl "1"/"MT", UCSC "chr1"/"chrM")."""
    aliases = [name]
    if name.startswith("chr"):
        aliases.append(name[3:])
        if name == "chrM":
            aliases.append("MT")
    else:
        aliases.append("chr" + name)
        if name == "MT":
            aliases.append("chrM")
    return aliases


def _padded_slice(chromosome: bytearray, start: int, stop: int) -> bytes:
    """chromosome[start:stop], with N where the window runs past either end."""
    low = min(max(start, 0), len(chromosome))
    high = max(min(stop, len(chromosome)), low)
    left = min(max(0, -start), stop - start)
    core = bytes(chromosome[low:high])
    return b"N" * left + core + b"N" * (stop - start - left - len(core))


def extract_promoters(genome_fasta: str | os.PathLike, gtf: str | os.PathLike,
                      upstream: int = 500, downstream: int = 2000) -> pd.DataFrame:
    """Promoter of each GTF gene: `upstream` bases before its TSS and `downstream` from it.

    The window follows the direction of transcription (reverse complement on
    the - strand) and is padded with N past chromosome ends. The genome is
    streamed one chromosome at a time; chromosomes without genes are skipped.
    Chromosome names may differ in style ("1" vs "chr1").

    Returns DataFrame(ensembl_id, symbol, sequence) in GTF order;
    ``attrs["report"]`` counts genes whose chromosome is missing from the genome.
    """
    if int(upstream) < 0 or int(downstream) < 0 or int(upstream) + int(downstream) == 0:
        raise InputError(None, "upstream/downstream",
                         f"invalid promoter window: upstream={upstream}, downstream={downstream}",
                         "give non-negative lengths, not both zero (the paper: 500 and 2000)")
    upstream, downstream = int(upstream), int(downstream)
    tss, n_canonical = _read_gtf_tss(gtf)
    alias_to_chrom: dict[str, str] = {}
    for chrom in tss["chrom"].unique():
        alias_to_chrom.setdefault(chrom, chrom)
    for chrom in tss["chrom"].unique():
        for alias in _chromosome_aliases(chrom)[1:]:
            alias_to_chrom.setdefault(alias, chrom)
    by_chrom = {chrom: rows for chrom, rows in tss.groupby("chrom", sort=False)}

    sequences: dict[str, str] = {}
    done: set[str] = set()
    fasta_names: list[str] = []
    n_outside = 0

    def wanted(name: str) -> bool:
        return alias_to_chrom.get(name) not in (None, *done)

    for name, _, chromosome in _fasta_records(genome_fasta, wanted):
        fasta_names.append(name)
        if chromosome is None:
            continue
        chrom = alias_to_chrom[name]
        done.add(chrom)
        rows = by_chrom[chrom]
        for gene, strand, site in zip(rows["ensembl_id"], rows["strand"], rows["tss"]):
            if not 0 <= site < len(chromosome):
                n_outside += 1  # annotation of another assembly
                continue
            if strand == "+":
                window = _padded_slice(chromosome, site - upstream, site + downstream)
            else:
                window = _padded_slice(chromosome, site - downstream + 1, site + upstream + 1)
                window = window.translate(_COMPLEMENT)[::-1]
            sequences[gene] = window.decode("ascii", errors="replace")
        logger.info("%s: promoters of %d genes", name, len(rows))

    if not sequences:
        raise InputError(genome_fasta, "seqname",
                         f"no gene's chromosome of the GTF (e.g. {list(by_chrom)[:5]}) is in the genome "
                         f"FASTA (e.g. {fasta_names[:5]}), or every TSS lies outside it",
                         "use the genome FASTA and GTF of the same assembly")
    missing = tss[~tss["chrom"].isin(done)]
    table = tss[tss["ensembl_id"].isin(sequences.keys())]
    table = pd.DataFrame({
        "ensembl_id": table["ensembl_id"].to_numpy(dtype=object),
        "symbol": table["symbol"].to_numpy(dtype=object),
        "sequence": table["ensembl_id"].map(sequences).to_numpy(dtype=object),
    })
    table.attrs["report"] = {
        "n_genes": len(table),
        "n_canonical_tss": n_canonical,
        "n_missing_chromosome": len(missing),
        "missing_chromosomes": list(missing["chrom"].unique()[:_MAX_LISTED]),
        "n_tss_outside_chromosome": n_outside,
        "upstream": upstream,
        "downstream": downstream,
    }
    if len(missing):
        logger.warning("%d genes on chromosomes absent from %s: %s", len(missing), genome_fasta,
                       table.attrs["report"]["missing_chromosomes"])
    return table


def hgnc_ensembl_ids(path: str | os.PathLike) -> list[str]:
    """Ensembl IDs of every HGNC gene (primary assembly), for ``preferred_ids``.

    Ensembl gene tables also list alternate-haplotype copies of a gene under
    other IDs; HGNC names one, which resolves such symbols.
    """
    header = [c.strip().strip('"') for c in first_line(path).split("\t")]
    if "ensembl_gene_id" not in header:
        raise InputError(path, "ensembl_gene_id", f"missing column (header starts {header[:6]})",
                         f"give the {_HGNC_LAYOUT}, e.g. hgnc_complete_set.txt from genenames.org")
    table = pd.read_csv(path, sep="\t", usecols=["ensembl_gene_id"], dtype=str, low_memory=False)
    return strip_version(table["ensembl_gene_id"].dropna().tolist()).tolist()


HGNC_SYMBOL_ROUTES = {"previous": "prev_symbol", "alias": "alias_symbol"}   # route -> HGNC column


def hgnc_symbol_routes(path: str | os.PathLike) -> pd.DataFrame:
    """HGNC's previous and alias symbols that name exactly one gene: ``symbol, ensembl_id, route``.

    ``route`` is ``previous`` (a former approved symbol, e.g. ATP5E -> ATP5F1E) or
    ``alias``. A name listed for several genes within a route is left out (it is
    ambiguous), and so is any name that is some gene's current symbol (the
    current symbol wins; symbol harmonisation tries it first anyway). A file
    without the two columns gives an empty table.
    """
    header = [c.strip().strip('"') for c in first_line(path).split("\t")]
    if "ensembl_gene_id" not in header or "symbol" not in header:
        raise InputError(path, "ensembl_gene_id" if "symbol" in header else "symbol",
                         f"missing column (header starts {header[:6]})",
                         f"give the {_HGNC_LAYOUT}, e.g. hgnc_complete_set.txt from genenames.org")
    columns = ["symbol", "ensembl_gene_id"] + [c for c in HGNC_SYMBOL_ROUTES.values() if c in header]
    table = pd.read_csv(path, sep="\t", usecols=columns, dtype=str, keep_default_na=False, index_col=False)
    table = table[table["ensembl_gene_id"].str.strip() != ""]
    current = set(table["symbol"].str.strip().str.upper())
    parts = []
    for route, column in HGNC_SYMBOL_ROUTES.items():
        if column not in table.columns:
            continue
        names = table[column].str.strip().str.strip('"').str.split("|")
        pairs = pd.DataFrame({"symbol": names, "ensembl_id": strip_version(table["ensembl_gene_id"].str.strip())})
        pairs = pairs.explode("symbol")
        pairs["symbol"] = pairs["symbol"].str.strip()
        pairs = pairs[(pairs["symbol"] != "") & ~pairs["symbol"].str.upper().isin(current)].drop_duplicates()
        unique = ~pairs["symbol"].str.upper().duplicated(keep=False)
        parts.append(pairs[unique].assign(route=route))
    if not parts:
        return pd.DataFrame(columns=["symbol", "ensembl_id", "route"])
    return pd.concat(parts, ignore_index=True)


def read_promoters(inputs: Mapping[str, str], upstream: int = 500, downstream: int = 2000) -> pd.DataFrame:
    """Promoters from one of the configured sources: DataFrame(ensembl_id, sequence).

    ``inputs`` holds ``fasta`` (records named by Ensembl ID), or ``epd_sequences``
    and ``epd_ensembl`` (EPDnew), or ``genome`` and ``gtf`` (extracted around TSSs).
    """
    keys = set(inputs)
    if keys == {"fasta"}:
        return read_promoters_fasta(inputs["fasta"])
    if keys == {"epd_sequences", "epd_ensembl"}:
        return read_epd_promoters(inputs["epd_sequences"], inputs["epd_ensembl"])
    if keys == {"genome", "gtf"}:
        return extract_promoters(inputs["genome"], inputs["gtf"], upstream, downstream)
    raise InputError(None, "references.promoters", f"unsupported keys {sorted(keys)}",
                     "give {fasta: ...}, {epd_sequences: ..., epd_ensembl: ...} or {genome: ..., gtf: ...}")
