"""The demo world's planted truth for the in-silico experiments.

The demo world (``genecompass.simulate.world``) already has what the experiments
need; this module writes it down in the layouts of the real references, so
one reader serves both:

- **Dosage-sensitive TFs** (Ni et al. 2019 layout: ``ensembl_id, gene_name,
  dosage_insensitive, dosage_sensitive``). A TF's *dosage reach* is how far
  the loss of one copy (half its activity) travels in the cells of the world:
  in each cell type's programme, the TF's activity is halved, the loss is
  propagated down the TF hierarchy, and the absolute changes of expected log
  expression are summed over all genes; the reach is the largest such sum over
  the cell types (the tissue a copy-number change hits hardest). It follows
  the network (out-degree, edge weights, downstream TFs) where the TF acts, and
  is zero for a TF that no cell type turns on, which cannot have a dosage
  phenotype. The paper makes this point of the real labels: dosage effects
  depend on the cell state, which conservation scores cannot see. The top
  ``fraction`` of TFs by reach are labelled sensitive, the bottom ``fraction``
  insensitive, the middle unlabelled. In the demo world the sensitive TFs are
  therefore mostly programme drivers and the insensitive ones mostly TFs no
  programme uses, as dosage-sensitive TFs are enriched for developmental
  regulators of restricted expression (Ni et al. 2019). The reach of the TF
  driven alone at unit input, whatever the cell types, is kept as
  ``reach_alone``.
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

from genecompass.simulate.world import build_world, cell_type_table
from genecompass.utils import atomic_output


def dosage_reach(world, species: str = "human", dosage: float = 0.5) -> pd.DataFrame:
    """Per TF: out-degree, cell types where it is active, ``reach`` and ``reach_alone``.

    ``reach``: the largest, over the cell types' programmes, summed absolute
    change of expected log expression over all genes when the TF keeps only
    ``dosage`` of its activity (propagated down the TF hierarchy); 0 for a TF
    active in no cell type. ``reach_alone``: the same with the TF driven alone
    at unit input, a property of the network only.
    """
    model = world.species_model(species)
    keep = ~model.is_mito  # MT rates are -inf
    network = world.networks[species]
    n_tfs = world.params.n_tfs

    def summed_change(inputs: np.ndarray, k: int) -> np.ndarray:
        full = world.log_rates(world.tf_activity(inputs, species), species)[:, keep]
        lowered = world.log_rates(world.tf_activity(inputs, species, dosage={k: dosage}), species)[:, keep]
        return np.abs(full - lowered).sum(axis=1)

    rows = []
    for k in range(n_tfs):
        in_types = summed_change(world.programs, k)
        active = int((world.tf_activity(world.programs, species)[:, k] > 0.05).sum())
        rows.append({"tf_index": k, "ensembl_id": world.tfs[f"{species}_ensembl_id"].iloc[k],
                     "gene_name": world.tfs[f"{species}_symbol"].iloc[k],
                     "n_targets": int((network["tf_index"] == k).sum()), "active_cell_types": active,
                     "reach": float(in_types.max()),
                     "reach_alone": float(summed_change(np.eye(n_tfs)[k][None, :], k)[0])})
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
