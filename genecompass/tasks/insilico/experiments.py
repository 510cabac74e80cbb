"""The in-silico perturbation task of one dataset: deletion, state shift, candidate ranking.

A dataset is the tokenized cells of some QC'd samples of one species, with
cell states in an ``obs`` column (a source state and one or two targets). The
rules (:mod:`.run`) call:

- :func:`deletion_experiment` (paper Fig. 2b–g): each TF with enough known
  targets (the species' GRN knowledge) is deleted from the cells that hold it
  (:func:`genecompass.tasks.grn.deletion.deletion_shift`), and the embedding shifts
  of its targets are compared with housekeeping genes and all other genes.
- :func:`state_shift_experiment` (paper Fig. 6b): the target state's drivers
  overexpressed together in source cells, against random gene sets of the
  same size; and the source's own drivers knocked down by each factor.
- :func:`candidate_experiment` (paper Fig. 6c): every candidate overexpressed
  alone, ranked by its shift towards each target and away from the source.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from genecompass.errors import InputError
from genecompass.tasks.insilico.analysis import (
    gene_set_shift_tests,
    rank_candidates,
    shift_against_random,
    shift_summary,
    top_intersection,
)
from genecompass.tasks.insilico.perturb import Perturbation, cell_embeddings, centroid, knockout_rows, state_shift

log = logging.getLogger(__name__)


def state_rows(obs: pd.DataFrame, column: str, state: str, max_cells: int, seed: int) -> np.ndarray:
    """Sorted dataset rows of up to ``max_cells`` seeded random cells of one state."""
    if column not in obs.columns:
        raise InputError(None, "state_column", f"'{column}' is not an obs column of the QC'd samples "
                         f"(columns: {list(obs.columns)})", "name the obs column that holds the cell states")
    rows = np.flatnonzero(obs[column].astype(str).to_numpy() == str(state))
    if len(rows) == 0:
        states = sorted(obs[column].astype(str).unique())
        raise InputError(None, "source/targets", f"no cell of state '{state}' in '{column}' (states: {states})",
                         "name states that occur in the samples")
    rows = np.random.default_rng(seed).permutation(rows)[:max_cells]
    return np.sort(rows)


def targets_by_tf(network: pd.DataFrame, lookup: dict[str, int]) -> dict[int, set[int]]:
    """TF token -> target tokens, from the GRN knowledge table (``source_id, target_id``)."""
    targets: dict[int, set[int]] = {}
    for source, target in zip(network["source_id"], network["target_id"], strict=True):
        tf, gene = lookup.get(source), lookup.get(target)
        if tf is not None and gene is not None and tf != gene:
            targets.setdefault(tf, set()).add(gene)
    return targets


def deletion_experiment(model, dataset, targets: dict[int, set[int]], housekeeping: list[int], names: dict[int, str],
                        *, min_targets: int = 5, max_tfs: int | None = 10, max_cells: int = 100,
                        seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Delete each TF (the ``max_tfs`` held by most cells); embedding shifts of targets vs housekeeping vs other.

    Returns ``(shifts, tests)``: per TF and gene, the mean shift and the gene's
    set (``targets``, ``housekeeping``, ``other``); per TF, the comparisons of
    :func:`genecompass.tasks.insilico.analysis.gene_set_shift_tests`.
    """
    from genecompass.corpus import rows_holding
    from genecompass.tasks.grn.deletion import deletion_shift_in_cells

    max_length = int(model.config.max_genes)
    housekeeping = set(housekeeping)
    eligible = {tf: genes - housekeeping for tf, genes in targets.items() if len(genes - housekeeping) >= min_targets}
    held = rows_holding(dataset, list(eligible), max_length)
    chosen = sorted((tf for tf in held if len(held[tf])), key=lambda tf: (-len(held[tf]), tf))[:max_tfs]
    if not chosen:
        raise InputError(None, "deletion.min_targets", f"no TF with {min_targets}+ known targets occurs in the "
                         "cells", "lower min_targets, or check the GRN knowledge of this species")
    shift_frames, test_frames = [], []
    for tf in chosen:
        rows, shifts = deletion_shift_in_cells(model, dataset, tf, held[tf], max_length=max_length,
                                               max_cells=max_cells, seed=seed)
        shifts = shifts.set_index("token_id")["mean_shift"]
        sets = {"targets": sorted(eligible[tf] & set(shifts.index)),
                "housekeeping": sorted(housekeeping & set(shifts.index))}
        gene_set = pd.Series("other", index=shifts.index)
        for name, tokens in sets.items():
            gene_set[tokens] = name
        shift_frames.append(pd.DataFrame({"tf": names.get(tf, str(tf)), "tf_token": tf, "token_id": shifts.index,
                                          "gene": [names.get(t, str(t)) for t in shifts.index],
                                          "set": gene_set.to_numpy(), "shift": shifts.to_numpy()}))
        if all(len(tokens) >= 2 for tokens in sets.values()):
            tests = gene_set_shift_tests(shifts, sets)
            tests.insert(0, "tf", names.get(tf, str(tf)))
            tests.insert(1, "n_cells", len(rows))
            test_frames.append(tests)
        log.info("deleted %s in %d cells: %d genes shifted", names.get(tf, tf), len(rows), len(shifts))
    if not test_frames:
        raise InputError(None, "housekeeping", "no deleted TF has two or more targets and housekeeping genes "
                         "among the shifted genes", "give a housekeeping list that matches the species' genes")
    return pd.concat(shift_frames, ignore_index=True), pd.concat(test_frames, ignore_index=True)


def state_shift_experiment(model, dataset, source_rows, target_rows, drivers: list[int], pool=None, *,
                           source_drivers: list[int] = (), knockout_factors=(0.5, 0.25, 0.0), level="median",
                           n_random: int = 20, seed: int = 0, batch_size: int = 64, pooling: str = "mean",
                           progress: bool = False) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Drivers vs random sets (per-cell shifts and summary), and the knockdown dose series of the source's drivers.

    The knockdown series scales every source driver together by each factor in
    the source cells where they all rank in the top half, and reports the mean
    shift towards the source centroid (negative: away from the source) and
    towards the target. ``pool``: the genes random sets are drawn from
    (default: every gene the source cells hold, so random genes are as
    plausible in those cells as the drivers).
    """
    if pool is None:
        from genecompass.corpus import cell_tokens

        pool = np.unique(cell_tokens(dataset, np.asarray(source_rows), None)[1])
    pool = sorted(set(int(t) for t in pool) - {int(t) for t in drivers})
    def embed(rows, **kwargs):
        return cell_embeddings(model, dataset, rows, batch_size=batch_size, pooling=pooling, **kwargs)

    source_centroid = centroid(embed(source_rows))
    target_centroid = centroid(embed(target_rows))
    origin = (source_centroid + target_centroid) / 2
    per_cell = shift_against_random(model, dataset, source_rows, target_centroid, list(drivers), pool=list(pool),
                                    n_random=n_random, level=level, seed=seed, batch_size=batch_size,
                                    pooling=pooling, origin=origin, progress=progress)
    summary = shift_summary(per_cell)
    dose_rows = []
    if len(source_drivers):
        eligible = np.intersect1d(source_rows, knockout_rows(dataset, list(source_drivers)))
        for factor in knockout_factors:
            if len(eligible) == 0:
                break
            perturbation = (Perturbation("delete", tuple(source_drivers)) if factor == 0
                            else Perturbation("scale", tuple(source_drivers), factor=float(factor)))
            original = embed(eligible, exclude=tuple(source_drivers))
            changed = embed(eligible, perturbation=perturbation)
            dose_rows.append({"factor": float(factor), "n_cells": len(eligible),
                              "shift_to_source": float(state_shift(original, changed, source_centroid, origin).mean()),
                              "shift_to_target": float(state_shift(original, changed, target_centroid, origin).mean())})
    return per_cell, summary, pd.DataFrame(dose_rows, columns=["factor", "n_cells", "shift_to_source",
                                                                "shift_to_target"])


def candidate_experiment(model, dataset, source_rows, target_rows: dict[str, np.ndarray], candidates: list[int], *,
                         level="median", top_k: int = 10, batch_size: int = 64, pooling: str = "mean",
                         progress: bool = False) -> tuple[pd.DataFrame, list[int]]:
    """Every candidate overexpressed alone in the source cells; the ranking and the top-k intersection."""
    def state_centroid(rows):
        return centroid(cell_embeddings(model, dataset, rows, batch_size=batch_size, pooling=pooling))

    targets = {name: state_centroid(rows) for name, rows in target_rows.items()}
    source_centroid = state_centroid(source_rows)
    origin = np.mean([source_centroid, *targets.values()], axis=0)
    ranking = rank_candidates(model, dataset, source_rows, targets, source_centroid, list(candidates),
                              level=level, batch_size=batch_size, pooling=pooling, origin=origin, progress=progress)
    return ranking, top_intersection(ranking, top_k)


@dataclass
class StateData:
    """One in-silico dataset, loaded: its cells, their states' rows, token names and drivers."""

    dataset: object
    lookup: dict[str, int]
    names: dict[int, str]
    drivers: dict[str, list[int]]
    source: np.ndarray
    targets: dict[str, np.ndarray]


def load_state_data(entry: dict, dictionary_path, shards, qc_files, drivers_file, max_cells: int,
                    seed: int) -> StateData:
    """The tokenized cells of a ``tasks.insilico`` dataset and the rows of its source and target states.

    ``drivers_file``: the drivers table when the entry's ``drivers`` is a file (None when it is a mapping).
    """
    from genecompass.corpus import load_tokenized
    from genecompass.dictionary import read_dictionary
    from genecompass.gene_sets import driver_tokens, gene_token_lookup, token_names
    from genecompass.tasks.annotation.finetune import obs_for_tokens

    dictionary = read_dictionary(dictionary_path)
    lookup = gene_token_lookup(dictionary, entry["species"])
    dataset = load_tokenized(list(shards))
    obs = obs_for_tokens(dataset, list(qc_files))
    column = entry["state_column"]
    return StateData(dataset=dataset, lookup=lookup, names=token_names(dictionary, entry["species"]),
                     drivers=driver_tokens(entry, drivers_file, lookup),
                     source=state_rows(obs, column, entry["source"], max_cells, seed),
                     targets={name: state_rows(obs, column, name, max_cells, seed) for name in entry["targets"]})
