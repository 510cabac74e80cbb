"""The human-mouse homolog token dictionary.

Homologous human and mouse genes share one token named by the human Ensembl
ID (paper: "homologous genes between the two species were uniformly
represented using human Ensembl IDs"); every other core gene keeps its own
species' Ensembl ID. Special tokens come first: pad = 0, mask, then one token
per species, which the model prepends to each cell.

Homology policies:

- ``one2one`` (default): only pairs in which each gene has exactly one
  ortholog of the other species share a token. Genes in one-to-many and
  many-to-many relations keep their own species' tokens.
- ``one2many``: additionally, every mouse gene whose only human ortholog is a
  given human gene joins that gene's token, even when the human gene has
  several mouse copies; the copies' counts are summed in a mouse cell.
  Mouse genes with several human orthologs still keep their own tokens.
"""

from __future__ import annotations

import json

import pandas as pd

from .errors import InputError

SPECIAL_TOKENS = ("<pad>", "<mask>", "<human>", "<mouse>")
PAD_TOKEN_ID = 0
MASK_TOKEN_ID = 1
SPECIES_TOKEN_IDS = {"human": 2, "mouse": 3}
POLICIES = ("one2one", "one2many")
COLUMNS = ["token_id", "token", "token_class", "human_ensembl_id", "mouse_ensembl_id",
           "human_symbol", "mouse_symbol", "homology_type"]


def _accepted_pairs(orthologs: pd.DataFrame, human_ids, mouse_ids, policy: str,
                    min_confidence: float | None) -> pd.DataFrame:
    pairs = orthologs[orthologs["human_id"].isin(human_ids) & orthologs["mouse_id"].isin(mouse_ids)]
    if min_confidence is not None:
        pairs = pairs[pairs["confidence"].fillna(0) >= min_confidence]
    types = {"one2one": ["ortholog_one2one"], "one2many": ["ortholog_one2one", "ortholog_one2many"]}[policy]
    pairs = pairs[pairs["homology_type"].isin(types)].drop_duplicates(["human_id", "mouse_id"])
    human_degree = pairs.groupby("human_id")["mouse_id"].transform("size")
    mouse_degree = pairs.groupby("mouse_id")["human_id"].transform("size")
    keep = mouse_degree == 1
    if policy == "one2one":
        keep &= human_degree == 1
    return pairs[keep]


def build_dictionary(human_genes: pd.DataFrame, mouse_genes: pd.DataFrame, orthologs: pd.DataFrame,
                     policy: str = "one2one", core_biotypes=("protein_coding", "lncRNA", "miRNA"),
                     min_confidence: float | None = None) -> pd.DataFrame:
    """Build the token table from the two gene tables and the ortholog pairs.

    Gene tables are indexed by Ensembl ID with ``symbol`` and ``biotype``
    columns (``genes.read_gene_table``); orthologs come from
    ``genes.read_orthologs``. Only core genes enter the dictionary.
    """
    if policy not in POLICIES:
        raise InputError(None, "tokens.homology_policy", f"unknown policy '{policy}'",
                         f"use one of {list(POLICIES)}")
    human = human_genes[human_genes["biotype"].isin(core_biotypes)]
    mouse = mouse_genes[mouse_genes["biotype"].isin(core_biotypes)]
    pairs = _accepted_pairs(orthologs, human.index, mouse.index, policy, min_confidence)

    homologous = (
        pairs.sort_values(["human_id", "mouse_id"])
        .groupby("human_id", sort=True)
        .agg(mouse_ensembl_id=("mouse_id", ";".join), homology_type=("homology_type", "first"))
        .reset_index()
        .rename(columns={"human_id": "human_ensembl_id"})
    )
    homologous["token"] = homologous["human_ensembl_id"]
    homologous["token_class"] = "homologous"

    human_only = pd.DataFrame({"human_ensembl_id": sorted(set(human.index) - set(pairs["human_id"]))})
    human_only["token"] = human_only["human_ensembl_id"]
    human_only["token_class"] = "human_only"
    mouse_only = pd.DataFrame({"mouse_ensembl_id": sorted(set(mouse.index) - set(pairs["mouse_id"]))})
    mouse_only["token"] = mouse_only["mouse_ensembl_id"]
    mouse_only["token_class"] = "mouse_only"

    special = pd.DataFrame({"token": list(SPECIAL_TOKENS), "token_class": "special"})
    table = pd.concat([special, homologous, human_only, mouse_only], ignore_index=True)
    table.insert(0, "token_id", range(len(table)))

    human_symbol = human["symbol"].to_dict()
    mouse_symbol = mouse["symbol"].to_dict()
    table["human_symbol"] = table["human_ensembl_id"].map(human_symbol)
    table["mouse_symbol"] = table["mouse_ensembl_id"].map(
        lambda ids: ";".join(mouse_symbol.get(i, "") for i in ids.split(";")) if isinstance(ids, str) else None)
    table["homology_type"] = table["homology_type"].where(table["token_class"] == "homologous")
    return table[COLUMNS].fillna("")


def summarize(table: pd.DataFrame) -> dict:
    counts = table["token_class"].value_counts()
    genes = table[table["token_class"] != "special"]
    return {
        "n_tokens": int(len(table)),
        "n_special": int(counts.get("special", 0)),
        "n_gene_tokens": int(len(genes)),
        "n_homologous": int(counts.get("homologous", 0)),
        "n_human_only": int(counts.get("human_only", 0)),
        "n_mouse_only": int(counts.get("mouse_only", 0)),
        "n_mouse_genes_on_shared_tokens": int(
            genes.loc[genes["token_class"] == "homologous", "mouse_ensembl_id"].str.split(";").str.len().sum()),
    }


def write_dictionary(table: pd.DataFrame, path, summary_path=None) -> None:
    table.to_csv(path, sep="\t", index=False)
    if summary_path is not None:
        with open(summary_path, "w") as handle:
            json.dump(summarize(table), handle, indent=2)
            handle.write("\n")


def read_dictionary(path) -> pd.DataFrame:
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise InputError(path, ", ".join(missing), "the token dictionary lacks these columns",
                         "rebuild it with the `token_dictionary` rule")
    table["token_id"] = table["token_id"].astype(int)
    if not (table["token_id"].to_numpy() == range(len(table))).all():
        raise InputError(path, "token_id", "token ids are not 0..N-1 in order",
                         "rebuild it with the `token_dictionary` rule")
    return table


def gene_to_token(table: pd.DataFrame, species: str) -> dict[str, int]:
    """Map a species' Ensembl IDs to token ids (several genes may share one)."""
    if species not in SPECIES_TOKEN_IDS:
        raise InputError(None, "species", f"unknown species '{species}'", "use 'human' or 'mouse'")
    column = f"{species}_ensembl_id"
    mapping: dict[str, int] = {}
    for token_id, ids in zip(table["token_id"], table[column]):
        if ids:
            for gene in ids.split(";"):
                mapping[gene] = int(token_id)
    return mapping
