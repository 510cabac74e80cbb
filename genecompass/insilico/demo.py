"""The demo world's planted truth for the in-silico experiments.

The demo world (``genecompass.simulate``) already has what the experiments
need; this module writes it down in the layouts of the real references, so
one reader serves both:

- **Dosage-sensitive TFs** (Ni et al. 2019 layout: ``ensembl_id, gene_name,
  dosage_insensitive, dosage_sensitive``). A TF's *dosage reach* is how far
  the loss of one copy (half its activity) travels: the summed change of
  expected log expression over all genes when the TF, driven alone, is
  halved, the loss propagated down the TF hierarchy. It is a property of the
  network (out-degree, edge weights, downstream TFs), which the GRN knowledge
  carries and expression shows only where the TF is active. The top
  ``fraction`` of TFs by reach are labelled sensitive, the bottom
  ``fraction`` insensitive, the middle unlabelled.
- **Housekeeping genes** (Eisenberg & Levanon layout: symbol, RefSeq): the
  most highly expressed protein-coding genes that no TF regulates and no gene
  family co-varies, so their level is the same in every cell type.
- **Fate drivers** (``state, species, gene``): each cell type's programme
  drivers. A cell type is a cell state that its drivers set up, so
  overexpressing a target type's drivers in source cells should move them
  towards the target, as OSKM moves fibroblasts towards stem cells.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..simulate import build_world, cell_type_table
from ..utils import atomic_output


def dosage_reach(world, species: str = "human", dosage: float = 0.5) -> pd.DataFrame:
    """Per TF: out-degree, cell types where it is active, and its dosage reach.

    The reach is the summed absolute change of expected log expression over
    all genes when the TF, driven alone at unit input, loses ``1 - dosage`` of
    its activity; the loss travels down the TF hierarchy, so a TF reaches
    further through many strong edges and through downstream TFs.
    """
    model = world.species_model(species)
    keep = ~model.is_mito  # MT rates are -inf
    network = world.networks[species]
    rows = []
    for k in range(world.params.n_tfs):
        alone = np.zeros(world.params.n_tfs)
        alone[k] = 1.0
        full = world.log_rates(world.tf_activity(alone, species), species)[0][keep]
        lowered = world.log_rates(world.tf_activity(alone, species, dosage={k: dosage}), species)[0][keep]
        active = int(sum(world.tf_activity(inputs, species)[k] > 0.05 for inputs in world.programs))
        rows.append({"tf_index": k, "ensembl_id": world.tfs[f"{species}_ensembl_id"].iloc[k],
                     "gene_name": world.tfs[f"{species}_symbol"].iloc[k],
                     "n_targets": int((network["tf_index"] == k).sum()), "active_cell_types": active,
                     "reach": float(np.abs(full - lowered).sum())})
    return pd.DataFrame(rows)


def dosage_labels(reach: pd.DataFrame, fraction: float = 0.4) -> pd.DataFrame:
    """Top ``fraction`` by reach sensitive, bottom ``fraction`` insensitive (ties: fewer targets lower)."""
    if not 0 < fraction <= 0.5:
        raise ValueError(f"fraction must be in (0, 0.5], got {fraction}")
    ranked = reach.sort_values(["reach", "n_targets", "tf_index"], kind="mergesort").reset_index(drop=True)
    n = int(round(fraction * len(ranked)))
    table = ranked[["ensembl_id", "gene_name"]].copy()
    table["dosage_insensitive"] = np.where(np.arange(len(ranked)) < n, "Yes", "")
    table["dosage_sensitive"] = np.where(np.arange(len(ranked)) >= len(ranked) - n, "Yes", "")
    return table[(table["dosage_insensitive"] == "Yes") | (table["dosage_sensitive"] == "Yes")]


def housekeeping_genes(world, species: str = "human", n: int = 60) -> list[str]:
    """The ``n`` highest-baseline protein-coding genes outside the network, the TFs and the families."""
    model = world.species_model(species)
    regulated = set(world.networks[species]["target_row"].astype(int))
    in_family = model.family_membership.any(axis=0)
    eligible = ((model.genes["biotype"].to_numpy() == "protein_coding") & ~model.is_mito & ~in_family
                & ~np.isin(np.arange(model.n_genes), [*regulated, *model.tf_gene_index]))
    rows = np.flatnonzero(eligible)
    rows = rows[np.argsort(-model.log_baseline[rows], kind="stable")][:n]
    return model.genes["symbol"].iloc[rows].tolist()


def fate_drivers(world) -> pd.DataFrame:
    """Each cell type's programme drivers, per species: ``state, species, gene``."""
    table = cell_type_table(world)
    drivers = table[table["role"] == "driver"]
    return drivers.rename(columns={"cell_type": "state", "tf": "gene"})[["state", "species", "gene"]]


def write_insilico_truth(outdir, seed: int, world_params: dict | None = None, fraction: float = 0.4,
                         n_housekeeping: int = 60) -> dict[str, str]:
    """Write ``dosage_sensitive_tfs.csv``, ``housekeeping.tsv``, ``fate_drivers.tsv`` and ``dosage_reach.tsv``."""
    world = build_world(seed, world_params)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    reach = dosage_reach(world)
    paths = {"labels": out / "dosage_sensitive_tfs.csv", "reach": out / "dosage_reach.tsv",
             "housekeeping": out / "housekeeping.tsv", "drivers": out / "fate_drivers.tsv"}
    with atomic_output(paths["labels"]) as tmp:
        dosage_labels(reach, fraction).to_csv(tmp, index=False)
    with atomic_output(paths["reach"]) as tmp:
        reach.to_csv(tmp, sep="\t", index=False)
    with atomic_output(paths["housekeeping"]) as tmp:
        Path(tmp).write_text("".join(f"{gene}\tNA\n" for gene in housekeeping_genes(world, n=n_housekeeping)))
    with atomic_output(paths["drivers"]) as tmp:
        fate_drivers(world).to_csv(tmp, sep="\t", index=False)
    return {name: str(path) for name, path in paths.items()}
