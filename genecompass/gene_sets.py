"""Readers of the gene lists the in-silico experiments need, mapped onto token ids.

- Dosage-sensitivity labels in the layout of Ni et al. 2019 as Geneformer
  ships them (``ensembl_id, gene_name, dosage_insensitive, dosage_sensitive``,
  ``Yes`` or empty); the demo writes the same layout.
- Plain gene lists (first whitespace-separated field per line, e.g. the
  Eisenberg & Levanon housekeeping genes: symbol, RefSeq).
- Fate drivers: a ``state, species, gene`` table or, in the config, a mapping
  state -> genes.

Genes map to tokens through the token dictionary: Ensembl IDs first, then
upper-cased symbols of the given species, then of the other species (a
homologous gene is one token, so human gene lists reach mouse cells).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from genecompass.errors import InputError
from genecompass.tasks.insilico.methods import drivers_in_config

SPECIES = ("human", "mouse")


def gene_token_lookup(dictionary: pd.DataFrame, species: str) -> dict[str, int]:
    """Ensembl ID and upper-cased symbol -> token id; the given species' symbols win over the other's."""
    if species not in SPECIES:
        raise InputError(None, "species", f"'{species}'", f"use one of {list(SPECIES)}")
    genes = dictionary[dictionary["token_class"] != "special"]
    lookup: dict[str, int] = {}
    for other in [s for s in SPECIES if s != species] + [species]:  # later entries overwrite
        for column in (f"{other}_symbol", f"{other}_ensembl_id"):
            names = genes[column].fillna("").astype(str)
            keys = names.str.upper() if column.endswith("symbol") else names
            for key, token in zip(keys, genes["token_id"].astype(int), strict=True):
                if key:
                    lookup[key] = token
    return lookup


def tokens_of(genes, lookup: dict[str, int]) -> dict[str, int]:
    """The genes (symbols or Ensembl IDs) that have a token: gene -> token id, input order kept."""
    found = {}
    for gene in genes:
        token = lookup.get(str(gene).upper() if not str(gene).startswith("ENS") else str(gene))
        if token is not None:
            found[str(gene)] = token
    return found


def read_dosage_labels(path, lookup: dict[str, int]) -> pd.Series:
    """token id -> 1 (dosage sensitive) / 0 (insensitive) from a Ni et al. 2019-layout CSV."""
    path = Path(path)
    table = pd.read_csv(path, dtype=str).fillna("")
    needed = {"ensembl_id", "gene_name", "dosage_insensitive", "dosage_sensitive"}
    if not needed <= set(table.columns):
        raise InputError(path, ", ".join(sorted(needed - set(table.columns))), "missing columns",
                         "use the layout ensembl_id,gene_name,dosage_insensitive,dosage_sensitive (Yes or empty)")
    sensitive = table["dosage_sensitive"].str.strip().str.lower() == "yes"
    insensitive = table["dosage_insensitive"].str.strip().str.lower() == "yes"
    if (sensitive & insensitive).any():
        genes = table.loc[sensitive & insensitive, "gene_name"].head(5).tolist()
        raise InputError(path, "dosage_sensitive", f"genes marked both sensitive and insensitive: {genes}",
                         "mark each gene in one column only")
    labels = {}
    labelled = table[sensitive | insensitive]
    for ensembl_id, name, label in zip(labelled["ensembl_id"], labelled["gene_name"],
                                       sensitive[sensitive | insensitive].astype(int), strict=True):
        token = lookup.get(ensembl_id, lookup.get(str(name).upper()))
        if token is not None:
            labels.setdefault(token, int(label))  # two genes on one token: the first keeps it
    if not labels:
        raise InputError(path, "ensembl_id", "no labelled gene has a token in the token dictionary",
                         "check that the labels' species matches the corpus (human IDs map human and homologous genes)")
    return pd.Series(labels, name="label").rename_axis("token_id").sort_index()


def read_gene_list(path) -> list[str]:
    """First whitespace-separated field of every non-empty, non-comment line (a header 'symbol'/'gene' is skipped)."""
    path = Path(path)
    genes = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            genes.append(fields[0])
    if genes and genes[0].lower() in ("symbol", "gene", "gene_name", "gene_symbol"):
        genes = genes[1:]
    if not genes:
        raise InputError(path, "genes", "the file lists no gene", "give one gene symbol or Ensembl ID per line")
    return genes


def read_drivers(entry, species: str) -> dict[str, list[str]]:
    """state -> driver genes, from a config mapping or a ``state, species, gene`` table (rows of ``species``)."""
    if isinstance(entry, dict):
        return {str(state): [str(g) for g in genes] for state, genes in entry.items()}
    path = Path(entry)
    table = pd.read_csv(path, sep="\t", dtype=str)
    if not {"state", "gene"} <= set(table.columns):
        raise InputError(path, "state, gene", "missing columns", "use a TSV with columns state, species, gene")
    if "species" in table.columns:
        table = table[table["species"] == species]
    return {state: rows["gene"].tolist() for state, rows in table.groupby("state", sort=False)}


def token_names(dictionary: pd.DataFrame, species: str) -> dict[int, str]:
    """token id -> the species' symbol (the other species' symbol where it has none)."""
    genes = dictionary[dictionary["token_class"] != "special"]
    other = "mouse" if species == "human" else "human"
    own = genes[f"{species}_symbol"].fillna("").astype(str)
    names = own.where(own != "", genes[f"{other}_symbol"].fillna("").astype(str))
    return dict(zip(genes["token_id"].astype(int), names, strict=True))


def driver_tokens(entry: dict, drivers_file, lookup: dict[str, int]) -> dict[str, list[int]]:
    """state -> driver token ids of an in-silico dataset entry (its config mapping, else ``drivers_file``)."""
    source = entry["drivers"] if drivers_in_config(entry) else drivers_file
    return {state: list(dict.fromkeys(tokens_of(genes, lookup).values()))
            for state, genes in read_drivers(source, entry["species"]).items()}
