"""Statistics and figures of the in-silico perturbation experiments (GeneCompass Fig. 2b–g, Fig. 6b–c).

Built on :mod:`genecompass.tasks.insilico.perturb`. The paper's measure of how far a
perturbation moves source cells towards a target state T (a centroid of the
target cells' embeddings) is ``sim = mean over cells of cos(S′, T) − cos(S, T)``,
S and S′ a cell's embedding before and after the perturbation.

- :func:`shift_against_random` / :func:`shift_summary` (Fig. 6b, OSKM):
  overexpress a gene set together in the source cells (to the gene's corpus
  median by default, or to the cell's maximum, or a multiple of the median)
  and compare its per-cell shifts with those of ``n_random`` seeded random
  gene sets of the same size: the empirical p (share of random sets whose
  mean shift reaches the genes'), a one-sided Mann–Whitney U test of the
  genes' cells against all random cells, and a z-score of the genes' mean
  against the random sets' means.
- :func:`rank_candidates` / :func:`top_intersection` (Fig. 6c): overexpress
  each candidate alone; its score for a target is its mean shift towards the
  target plus its mean shift away from the source centroid
  (``−mean(cos(S′, source) − cos(S, source))``); candidates are ranked per
  target, and those in the top k of every target are reported.
- :func:`gene_set_shift_tests` (Fig. 2b–g): after deleting a TF, compare the
  embedding shifts of its target genes with housekeeping and other genes
  (Mann–Whitney U and Welch t-tests); :func:`plot_deletion_shifts` draws the
  sets of several TFs side by side.

Knockout experiments (delete / scale) should pass source rows chosen with
:func:`genecompass.tasks.insilico.perturb.knockout_rows` (every knocked-out gene in
the top 50% of the cell's genes, the paper's rule); overexpression uses all
given cells.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from genecompass.errors import InputError
from genecompass.tasks.grn.deletion import shift_series
from genecompass.tasks.insilico.perturb import Perturbation, cell_embeddings, gene_tokens, state_shift


def _vector(value, field: str) -> np.ndarray:
    vector = np.asarray(value, dtype=np.float64).reshape(-1)
    if vector.size == 0 or not np.isfinite(vector).all():
        raise InputError(None, field, "expected a finite, non-empty vector", "pass a centroid (centroid(embeddings))")
    return vector


def _overexpression_shift(model, dataset, rows, original, goals: dict[str, np.ndarray], genes, level,
                          max_length, batch_size, pooling, origin=None) -> dict[str, np.ndarray]:
    """Per cell shift towards each goal vector when ``genes`` are overexpressed together.

    Mean pooling leaves the changed genes out of both embeddings, so the
    unperturbed one is recomputed without them (``original`` serves the
    species-token pooling, where nothing is left out).
    """
    genes = tuple(int(g) for g in genes)
    perturbation = Perturbation("overexpress", genes, level=level)
    if pooling == "mean":
        original = cell_embeddings(model, dataset, rows, max_length=max_length, batch_size=batch_size,
                                   pooling=pooling, exclude=genes)
    perturbed = cell_embeddings(model, dataset, rows, max_length=max_length, batch_size=batch_size,
                                perturbation=perturbation, pooling=pooling)
    return {name: state_shift(original, perturbed, goal, origin) for name, goal in goals.items()}


def shift_against_random(model, dataset, source_rows, target_centroid, genes: list[int], *, pool: list[int],
                         n_random: int = 20, level="median", seed: int = 0, max_length: int | None = None,
                         batch_size: int = 64, pooling: str = "mean", origin=None,
                         progress: bool = False) -> pd.DataFrame:
    """Per-cell shift towards the target when ``genes`` are overexpressed together, and for random gene sets.

    The random sets (``n_random``, seeded) have ``len(genes)`` distinct genes
    each, drawn from ``pool`` without ``genes``. Returns one row per set and
    source cell: ``set`` (``"genes"`` or ``"random_<i>"``), ``kind``
    (``"genes"``/``"random"``), ``row`` (dataset row), ``shift``
    (``cos(S′, T) − cos(S, T)``). ``.attrs``: ``genes``, ``random_sets``
    (set name → token ids), ``level``. The unperturbed embeddings are
    computed once (species pooling) or once per set, without its genes (mean).
    """
    from tqdm.auto import tqdm

    chosen = gene_tokens(model, genes, "genes")
    candidates = np.setdiff1d(np.unique(gene_tokens(model, pool, "pool")), chosen)
    if candidates.size < chosen.size:
        raise InputError(None, "pool", f"{candidates.size} genes outside the set to draw random sets of "
                         f"{chosen.size} from", "give a larger pool (e.g. all genes expressed in the source cells)")
    if isinstance(n_random, bool) or not isinstance(n_random, (int, np.integer)) or n_random < 1:
        raise InputError(None, "n_random", f"need at least one random set, got {n_random!r}", "use e.g. 20")
    Perturbation("overexpress", tuple(int(g) for g in chosen), level=level)  # checks the level up front
    target = _vector(target_centroid, "target_centroid")
    rng = np.random.default_rng(seed)
    sets = {"genes": [int(g) for g in chosen]}
    for i in range(int(n_random)):
        sets[f"random_{i}"] = sorted(int(g) for g in rng.choice(candidates, size=chosen.size, replace=False))
    rows = np.asarray(source_rows)
    original = None if pooling == "mean" else cell_embeddings(model, dataset, rows, max_length=max_length,
                                                              batch_size=batch_size, pooling=pooling)
    tables = []
    for name, members in tqdm(sets.items(), desc="overexpressing gene sets", unit="set", disable=not progress):
        shift = _overexpression_shift(model, dataset, rows, original, {"target": target}, members, level,
                                      max_length, batch_size, pooling, origin)["target"]
        tables.append(pd.DataFrame({"set": name, "kind": "genes" if name == "genes" else "random",
                                    "row": rows.astype(np.int64), "shift": shift}))
    table = pd.concat(tables, ignore_index=True)
    table.attrs.update(genes=sets["genes"], random_sets={k: v for k, v in sets.items() if k != "genes"},
                       level=level)
    return table


def shift_summary(per_cell: pd.DataFrame) -> dict:
    """Does the gene set beat random sets? (from :func:`shift_against_random`'s table)

    Returns ``n_cells``, ``n_random``, ``genes_mean`` (the paper's sim),
    ``random_mean`` and ``random_sd`` (mean and SD of the random sets' mean
    shifts), ``empirical_p`` (share of random sets whose mean ≥ the genes'),
    ``mannwhitney_u``/``mannwhitney_p`` (one-sided: the genes' cells shift
    more than all random cells pooled) and ``z_score``
    (``(genes_mean − random_mean) / random_sd``; ±inf when the SD is 0).
    """
    needed = {"set", "kind", "shift"}
    if not isinstance(per_cell, pd.DataFrame) or not needed <= set(per_cell.columns):
        raise InputError(None, "per_cell", f"needs columns {sorted(needed)}", "pass shift_against_random's table")
    genes = per_cell.loc[per_cell["kind"] == "genes", "shift"].dropna().to_numpy(np.float64)
    random = per_cell[per_cell["kind"] == "random"].dropna(subset=["shift"])
    if genes.size == 0 or random.empty:
        raise InputError(None, "per_cell", "needs the shifts of the gene set and of at least one random set",
                         "pass shift_against_random's table")
    set_means = random.groupby("set")["shift"].mean().to_numpy(np.float64)
    genes_mean = float(genes.mean())
    random_mean = float(set_means.mean())
    random_sd = float(set_means.std(ddof=1)) if set_means.size > 1 else float("nan")
    test = stats.mannwhitneyu(genes, random["shift"].to_numpy(np.float64), alternative="greater")
    difference = genes_mean - random_mean
    if random_sd > 0:
        z_score = difference / random_sd
    elif random_sd == 0:
        z_score = float(np.sign(difference) * np.inf) if difference else 0.0
    else:
        z_score = float("nan")
    return {"n_cells": int(genes.size), "n_random": int(set_means.size), "genes_mean": genes_mean,
            "random_mean": random_mean, "random_sd": random_sd,
            "empirical_p": float(np.mean(set_means >= genes_mean)),
            "mannwhitney_u": float(test.statistic), "mannwhitney_p": float(test.pvalue), "z_score": float(z_score)}


def rank_candidates(model, dataset, source_rows, targets: dict[str, np.ndarray], source_centroid,
                    candidates: list[int], *, level="median", max_length: int | None = None, batch_size: int = 64,
                    pooling: str = "mean", origin=None, progress: bool = False) -> pd.DataFrame:
    """Rank genes by how well overexpressing each alone turns the source cells into each target state.

    Per candidate: ``token_id``, ``toward_<target>`` (mean shift towards the
    target centroid), ``away_from_source`` (minus the mean shift towards the
    source centroid), ``score_<target>`` (their sum), ``rank_<target>`` (1 =
    highest score; ties by token id) and ``mean_rank`` over the targets.
    Sorted by ``mean_rank``, then token id.
    """
    from tqdm.auto import tqdm

    if not isinstance(targets, dict) or not targets:
        raise InputError(None, "targets", "expected a non-empty mapping target name -> centroid",
                         "pass e.g. {'stem': centroid(stem_embeddings)}")
    goals = {str(name): _vector(vector, f"targets[{name}]") for name, vector in targets.items()}
    goals_source = _vector(source_centroid, "source_centroid")
    if any(name == "__source__" for name in goals):
        raise InputError(None, "targets", "'__source__' is reserved", "rename that target")
    tokens = gene_tokens(model, candidates, "candidates")
    Perturbation("overexpress", (int(tokens[0]),), level=level)  # checks the level up front
    rows = np.asarray(source_rows)
    original = None if pooling == "mean" else cell_embeddings(model, dataset, rows, max_length=max_length,
                                                              batch_size=batch_size, pooling=pooling)
    records = []
    for token in tqdm(tokens, desc="overexpressing candidates", unit="gene", disable=not progress):
        shifts = _overexpression_shift(model, dataset, rows, original, {**goals, "__source__": goals_source},
                                       [int(token)], level, max_length, batch_size, pooling, origin)
        record = {"token_id": int(token)}
        record.update({f"toward_{name}": float(np.nanmean(shifts[name])) for name in goals})
        record["away_from_source"] = -float(np.nanmean(shifts["__source__"]))
        records.append(record)
    table = pd.DataFrame(records)
    for name in goals:
        table[f"score_{name}"] = table[f"toward_{name}"] + table["away_from_source"]
    for name in goals:
        order = np.lexsort((table["token_id"].to_numpy(), -table[f"score_{name}"].to_numpy()))
        ranks = np.empty(len(table), dtype=np.int64)
        ranks[order] = np.arange(1, len(table) + 1)
        table[f"rank_{name}"] = ranks
    table["mean_rank"] = table[[f"rank_{name}" for name in goals]].mean(axis=1)
    table = table.sort_values(["mean_rank", "token_id"], kind="mergesort").reset_index(drop=True)
    table.attrs.update(level=level, n_cells=int(rows.size), targets=list(goals))
    return table


def _rank_columns(ranking) -> list[str]:
    columns = [c for c in getattr(ranking, "columns", []) if str(c).startswith("rank_")]
    if not columns or "token_id" not in ranking.columns:
        raise InputError(None, "ranking", "needs token_id and rank_<target> columns", "pass rank_candidates' table")
    return columns


def top_intersection(ranking: pd.DataFrame, top_k: int) -> list[int]:
    """Candidates ranked within ``top_k`` for every target (paper Fig. 6c), in the ranking's order."""
    columns = _rank_columns(ranking)
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise InputError(None, "top_k", f"must be a positive int, got {top_k!r}", "use e.g. 10")
    inside = (ranking[columns] <= int(top_k)).all(axis=1)
    return [int(t) for t in ranking.loc[inside, "token_id"]]


def _set_members(series: pd.Series, gene_sets: dict) -> dict[str, np.ndarray]:
    if not isinstance(gene_sets, dict) or not gene_sets:
        raise InputError(None, "gene_sets", "expected a non-empty mapping name -> token ids",
                         "pass e.g. {'targets': [...], 'housekeeping': [...]}")
    if "other" in gene_sets:
        raise InputError(None, "gene_sets", "'other' names the genes in no set", "rename that gene set")
    index = series.index.to_numpy(np.int64)
    members = {str(name): np.intersect1d(index, np.asarray(list(tokens), dtype=np.int64))
               for name, tokens in gene_sets.items()}
    if not any(m.size for m in members.values()):
        raise InputError(None, "gene_sets", "no gene of any set has a shift",
                         "give token ids of genes in the cells (the genes with a shift)")
    in_any = np.concatenate(list(members.values()))
    members["other"] = np.setdiff1d(index, in_any)
    return members


def gene_set_shift_tests(shifts: pd.Series, gene_sets: dict[str, list[int]]) -> pd.DataFrame:
    """Are the shifts of a gene set larger than others'? (paper Fig. 2b–g)

    ``shifts``: token id → embedding shift (or :func:`genecompass.tasks.grn.deletion.deletion_shift`'s
    table), e.g. after deleting a TF. Each set is compared with ``other``
    (genes with a shift in no set), then the first set with each other set.
    One row per comparison: ``set, versus, n_set, n_versus, mean_set,
    mean_versus, median_set, median_versus, mannwhitney_p`` (two-sided) and
    ``welch_p`` (Welch's t-test); a p is NaN where a side has too few genes
    (none for Mann–Whitney, fewer than two for Welch). Genes without a shift
    are ignored.
    """
    series = shift_series(shifts)
    members = _set_members(series, gene_sets)
    names = [n for n in members if n != "other"]
    pairs = [(name, "other") for name in names] + [(names[0], name) for name in names[1:]]
    rows = []
    for first, second in pairs:
        a = series.loc[members[first]].to_numpy(np.float64)
        b = series.loc[members[second]].to_numpy(np.float64)
        mann = welch = float("nan")
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            if a.size and b.size:
                mann = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
            if a.size > 1 and b.size > 1:
                welch = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
        rows.append({"set": first, "versus": second, "n_set": int(a.size), "n_versus": int(b.size),
                     "mean_set": float(a.mean()) if a.size else float("nan"),
                     "mean_versus": float(b.mean()) if b.size else float("nan"),
                     "median_set": float(np.median(a)) if a.size else float("nan"),
                     "median_versus": float(np.median(b)) if b.size else float("nan"),
                     "mannwhitney_p": mann, "welch_p": welch})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- figures


def plot_state_shift(per_cell: pd.DataFrame, path, title: str = "") -> None:
    """Densities of the per-cell shifts (genes vs random sets pooled) and a box plot per set (Fig. 6b)."""
    from genecompass.plotting import plt, save_figure

    needed = {"set", "kind", "shift"}
    if not needed <= set(per_cell.columns):
        raise InputError(None, "per_cell", f"needs columns {sorted(needed)}", "pass shift_against_random's table")
    data = per_cell.dropna(subset=["shift"])
    genes = data.loc[data["kind"] == "genes", "shift"].to_numpy(np.float64)
    random = data.loc[data["kind"] == "random", "shift"].to_numpy(np.float64)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 1.6]})
    everything = np.concatenate([genes, random])
    low, high = (float(everything.min()), float(everything.max())) if everything.size else (0.0, 1.0)
    if high <= low:
        low, high = low - 0.5, high + 0.5
    bins = np.linspace(low, high, 31)
    for values, label, color in ((random, "random sets", "grey"), (genes, "gene set", "tab:red")):
        if values.size:
            axes[0].hist(values, bins=bins, density=True, alpha=0.55, color=color, label=label)
    axes[0].axvline(0.0, color="black", lw=0.8, ls=":")
    axes[0].set_xlabel("cos(S′, T) − cos(S, T)")
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize=7)
    sets = list(dict.fromkeys(data["set"]))
    axes[1].boxplot([data.loc[data["set"] == s, "shift"].to_numpy() for s in sets], showfliers=False)
    axes[1].set_xticks(np.arange(1, len(sets) + 1), sets, rotation=90, fontsize=6)
    axes[1].axhline(0.0, color="black", lw=0.8, ls=":")
    axes[1].set_ylabel("shift towards target")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def plot_candidates(ranking: pd.DataFrame, path, top_k: int = 10, title: str = "") -> None:
    """Grouped bars of the top ``top_k`` candidates' scores, one colour per target (Fig. 6c).

    Bars are labelled by the table's index (e.g. gene names, ``ranking.set_index("gene", drop=False)``),
    or by token id when the index is the default one.
    """
    from genecompass.plotting import plt, save_figure

    _rank_columns(ranking)
    targets = [str(c)[len("score_"):] for c in ranking.columns if str(c).startswith("score_")]
    top = ranking.head(max(1, int(top_k)))
    width = 0.8 / max(len(targets), 1)
    fig, axis = plt.subplots(figsize=(max(5, 0.6 * len(top) * max(1, len(targets)) + 2), 3.6))
    for i, name in enumerate(targets):
        axis.bar(np.arange(len(top)) + i * width, top[f"score_{name}"].to_numpy(), width, label=name)
    named = not isinstance(top.index, pd.RangeIndex)
    labels = [str(t) for t in (top.index if named else top["token_id"])]
    axis.set_xticks(np.arange(len(top)) + width * (len(targets) - 1) / 2, labels, rotation=90, fontsize=7)
    axis.axhline(0.0, color="black", lw=0.8, ls=":")
    axis.set_xlabel(f"candidate {'' if named else 'token id '}(by mean rank)")
    axis.set_ylabel("toward target + away from source")
    axis.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def plot_deletion_shifts(shifts: pd.DataFrame, path, title: str = "") -> None:
    """Box plots of the embedding shifts per deleted TF, one box per gene set (targets, housekeeping, other).

    ``shifts``: one row per TF and gene with columns ``tf`` (its name), ``set``
    and ``shift`` (e.g. the deletion experiment's table); sets are drawn in
    the order targets, housekeeping, other, then any others as they come.
    """
    from genecompass.plotting import plt, save_figure

    needed = {"tf", "set", "shift"}
    if not isinstance(shifts, pd.DataFrame) or not needed <= set(shifts.columns):
        raise InputError(None, "shifts", f"needs columns {sorted(needed)}", "pass one row per TF and gene")
    data = shifts.dropna(subset=["shift"])
    tfs = list(dict.fromkeys(data["tf"]))
    known = ["targets", "housekeeping", "other"]
    sets = [s for s in known if s in set(data["set"])] + [s for s in dict.fromkeys(data["set"]) if s not in known]
    width = 0.8 / max(len(sets), 1)
    fig, axis = plt.subplots(figsize=(max(5, 0.9 * len(tfs) * max(1, len(sets)) / 2 + 2), 3.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, name in enumerate(sets):
        groups = [data.loc[(data["tf"] == tf) & (data["set"] == name), "shift"].to_numpy(np.float64) for tf in tfs]
        present = [k for k, group in enumerate(groups) if group.size]
        if not present:
            continue
        boxes = axis.boxplot([groups[k] for k in present], positions=np.asarray(present) + i * width,
                             widths=width * 0.9, showfliers=False, patch_artist=True)
        for box in boxes["boxes"]:
            box.set_facecolor(colors[i % len(colors)])
            box.set_alpha(0.6)
        axis.plot([], [], color=colors[i % len(colors)], lw=6, alpha=0.6, label=name)
    axis.set_xticks(np.arange(len(tfs)) + width * (len(sets) - 1) / 2, [str(tf) for tf in tfs], rotation=90,
                    fontsize=7)
    axis.set_xlabel("deleted TF")
    axis.set_ylabel("gene embedding shift (1 − cos)")
    axis.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


__all__ = ["gene_set_shift_tests", "plot_candidates", "plot_deletion_shifts", "plot_state_shift",
           "rank_candidates", "shift_against_random", "shift_summary", "top_intersection"]
