"""A Perturb-seq experiment in the demo world, shaped like Norman et al. 2019.

One cell type of the world (K562 stands behind Norman's screen; the demo picks
``immune_like``) receives CRISPRa activations or CRISPRi knock-downs of single
genes and of gene pairs. Effects travel through the world's TF hierarchy
(:meth:`World.tf_activity`), so a perturbed TF moves its targets and the TFs
below it. Pairs can interact beyond the sum of their parts in two ways:

- *naturally*: activities saturate at ``tf_max_activity`` and cannot fall below
  zero, and one gene may sit upstream of the other (epistasis);
- *planted*: a chosen set of activated TF pairs act cooperatively on a group of
  genes (``synergy``: extra push in the singles' direction; ``buffering``:
  part of the sum is taken back; ``neomorphic``: genes neither single moves;
  ``epistatic``: the first TF masks part of the second's effect). The planted
  term scales with ``min(a_A, a_B)``, so it is zero unless both TFs are
  active, i.e. only in the double.

The experiment's size follows the real screen (``NORMAN_SHAPE``, counted from
``../shared/data/perturb/norman2019/``): about 1.24 doubles per perturbed gene,
69% of the genes in some double, and planted interaction classes in the shares
the real GI map shows. The written AnnData has the layout of GEARS's processed
Norman file (``perturb_processed.h5ad``), so the same loader reads both.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from genecompass.simulate.world import World, build_world, draw_counts, softmax_rows, stream_rng
from genecompass.tasks.perturbation.data import condition_genes
from genecompass.utils import settings_from_config

# Counted from ../shared/data/perturb/norman2019 (tests/test_perturb_simulate.py re-counts them):
# 106 single genes, 131 doubles, 73 genes in doubles; GI classes of the 125 fitted doubles with
# the thresholds of `classify_interactions` (they overlap: a pair can be synergistic and epistatic).
NORMAN_SHAPE = {
    "n_single_genes": 106,
    "n_doubles": 131,
    "n_genes_in_doubles": 73,
    "gi_class_fractions": {"synergy": 0.256, "buffering": 0.224, "neomorphic": 0.152, "epistatic": 0.28},
}

# Thresholds on the fit  delta_AB ~ c1 delta_A + c2 delta_B  (Norman's GI map): magnitude
# sqrt(c1^2 + c2^2), fit quality corr(fit, delta_AB), dominance |log(c1 / c2)|.
SYNERGY_MAGNITUDE = 1.25
BUFFERING_MAGNITUDE = 0.8
NEOMORPHIC_FIT = 0.8
EPISTATIC_DOMINANCE = 0.7


@dataclass(frozen=True)
class PerturbSeqParams:
    cell_type: str = "immune_like"
    n_activated_tfs: int = 16         # CRISPRa of TFs silent in the cell type
    n_knocked_down_tfs: int = 4       # CRISPRi of TFs active in the cell type
    n_other_genes: int = 4            # CRISPRa of non-TF genes: only their own mRNA moves
    # added TF input activity under CRISPRa: a moderate activity (the world's tf_max_activity is 3),
    # so that with the world's strong edges a pair's log-scale effects stay additive where nothing is planted
    activation_input: float = 1.0
    activation_log_effect: float = 1.5  # own-mRNA rise under CRISPRa (log scale)
    knockdown_log_effect: float = -2.5  # own-mRNA fall under CRISPRi
    # Planted pair terms, per unit of min(a_A, a_B): synergy adds and buffering takes back this
    # share of the pair's direct effect W_A + W_B on their targets; epistasis takes back this
    # share of the second TF's direct effect; neomorphic moves genes_per_interaction genes
    # neither TF regulates by this log effect.
    planted_synergy: float = 0.5
    planted_buffering: float = 0.5
    planted_epistasis: float = 0.6
    planted_neomorphic: float = 3.0
    genes_per_interaction: int = 15
    cells_per_condition: int = 50
    control_cells: int = 500
    library_log_mean: float = 9.4     # ~12,000 UMIs per cell (Norman: 8,600-17,000 per condition)
    library_log_sd: float = 0.3
    activity_jitter: float = 0.15

    @classmethod
    def from_overrides(cls, params: dict | None) -> PerturbSeqParams:
        return settings_from_config(cls, params, "simulate.perturbseq")


@dataclass
class Design:
    """Which genes are perturbed, how, and which pairs interact by construction."""

    modes: dict[str, str]                      # symbol -> activation | knockdown
    rows: dict[str, int]                       # symbol -> gene row of the human model
    tf_index: dict[str, int]                   # symbol -> TF index (TFs only)
    doubles: list[tuple[str, str]]
    planted: dict[tuple[str, str], tuple[str, np.ndarray, np.ndarray]]  # pair -> (kind, rows, effect)

    def conditions(self) -> list[str]:
        return ["ctrl", *[f"{g}+ctrl" for g in self.modes], *[f"{a}+{b}" for a, b in self.doubles]]


def _n_doubles(n_genes: int) -> tuple[int, int]:
    shape = NORMAN_SHAPE
    n_doubles = round(n_genes * shape["n_doubles"] / shape["n_single_genes"])
    n_in_doubles = round(n_genes * shape["n_genes_in_doubles"] / shape["n_single_genes"])
    return n_doubles, n_in_doubles


def design_experiment(world: World, p: PerturbSeqParams, seed: int) -> Design:
    rng = stream_rng(seed, "perturbseq_design")
    model = world.human
    symbols = model.genes["symbol"].to_numpy()
    base = world.tf_activity(world.program_inputs(p.cell_type), "human")
    active, silent = np.flatnonzero(base > 0.2), np.flatnonzero(base == 0)
    if len(silent) < p.n_activated_tfs or len(active) < p.n_knocked_down_tfs:
        raise ValueError(f"cell type {p.cell_type}: {len(silent)} silent and {len(active)} active TFs; "
                         "lower n_activated_tfs / n_knocked_down_tfs")
    activated = rng.choice(silent, p.n_activated_tfs, replace=False)
    knocked = rng.choice(active, p.n_knocked_down_tfs, replace=False)
    tf_rows = set(model.tf_gene_index.tolist())
    coding = np.flatnonzero((model.genes["biotype"].to_numpy() == "protein_coding") & ~model.is_mito)
    others = rng.choice([g for g in coding if g not in tf_rows], p.n_other_genes, replace=False)

    modes, rows, tf_index = {}, {}, {}
    for idx, mode in [*[(t, "activation") for t in activated], *[(t, "knockdown") for t in knocked]]:
        gene = symbols[model.tf_gene_index[idx]]
        modes[gene], rows[gene], tf_index[gene] = mode, int(model.tf_gene_index[idx]), int(idx)
    for row in others:
        modes[symbols[row]], rows[symbols[row]] = "activation", int(row)

    genes = list(modes)
    n_doubles, n_in_doubles = _n_doubles(len(genes))
    pool = list(rng.choice(genes, n_in_doubles, replace=False))
    # Planted cooperative pairs: activated TFs only (the term needs both TFs active).
    act_tfs = [g for g in pool if g in tf_index and modes[g] == "activation"]
    candidates = [tuple(sorted(pair)) for pair in itertools.combinations(act_tfs, 2)]
    rng.shuffle(candidates)
    fractions = NORMAN_SHAPE["gi_class_fractions"]
    kinds = (["synergy"] * round(n_doubles * fractions["synergy"])
             + ["buffering"] * round(n_doubles * fractions["buffering"])
             + ["neomorphic"] * round(n_doubles * fractions["neomorphic"])
             + ["epistatic"] * round(n_doubles * fractions["epistatic"]))
    planted = {}
    for pair, kind in zip(candidates, kinds):
        planted[pair] = _plant(world, tf_index[pair[0]], tf_index[pair[1]], kind, p, rng)
    others_pairs = [tuple(sorted(pair)) for pair in itertools.combinations(pool, 2)
                    if tuple(sorted(pair)) not in planted]
    rng.shuffle(others_pairs)
    doubles = [*planted, *others_pairs[: max(0, n_doubles - len(planted))]]
    return Design(modes, rows, tf_index, sorted(doubles), planted)


def _plant(world: World, tf_a: int, tf_b: int, kind: str, p: PerturbSeqParams, rng):
    """Genes and signs of a planted interaction: the pair's targets, or (neomorphic) quiet genes."""
    weights = world.human.weights
    usable = ~world.human.is_mito
    if kind == "neomorphic":
        # Genes neither TF regulates, and not among the most expressed (a jump there would
        # shift every other gene's share through normalisation).
        base = world.human.log_baseline
        quiet = np.flatnonzero(usable & (weights[tf_a] == 0) & (weights[tf_b] == 0)
                               & (base <= np.quantile(base[usable], 0.75)))
        rows = rng.choice(quiet, p.genes_per_interaction, replace=False)
        return kind, rows, rng.choice([-1.0, 1.0], len(rows))
    if kind == "epistatic":  # the first TF masks the second's direct effect
        rows = np.flatnonzero(usable & (weights[tf_b] != 0))
        return kind, rows, weights[tf_b][rows]
    joint = weights[tf_a] + weights[tf_b]
    rows = np.flatnonzero(usable & (joint != 0))
    return kind, rows, joint[rows]


def condition_log_rates(world: World, design: Design, p: PerturbSeqParams, condition: str,
                        inputs: np.ndarray) -> np.ndarray:
    """Unnormalised log expression (cells x genes) of cells under ``condition``."""
    genes = condition_genes(condition)
    inputs = inputs.copy()
    knockout = []
    for gene in genes:
        if gene in design.tf_index:
            if design.modes[gene] == "activation":
                inputs[:, design.tf_index[gene]] += p.activation_input
            else:
                knockout.append(design.tf_index[gene])
    activity = world.tf_activity(inputs, "human", knockout=knockout)
    logr = world.log_rates(activity, "human")
    for gene in genes:
        effect = p.activation_log_effect if design.modes[gene] == "activation" else p.knockdown_log_effect
        logr[:, design.rows[gene]] += effect
    pair = tuple(sorted(genes))
    if pair in design.planted:
        kind, rows, effect = design.planted[pair]
        both = np.minimum(activity[:, design.tf_index[pair[0]]], activity[:, design.tf_index[pair[1]]])
        gain = {"synergy": p.planted_synergy, "buffering": -p.planted_buffering,
                "neomorphic": p.planted_neomorphic, "epistatic": -p.planted_epistasis}[kind]
        logr[:, rows] += gain * both[:, None] * effect
    return logr


def expected_log_expression(world: World, design: Design, p: PerturbSeqParams, condition: str) -> np.ndarray:
    """Noise-free log1p CP10k profile of a condition (the planted truth)."""
    inputs = world.program_inputs(p.cell_type)[None, :]
    share = softmax_rows(condition_log_rates(world, design, p, condition, inputs))[0]
    return np.log1p(share * 1e4)


def simulate_perturbseq(seed: int, world_params: dict | None = None,
                        params: dict | PerturbSeqParams | None = None) -> tuple[ad.AnnData, Design, World]:
    """Cells x genes AnnData in GEARS's processed layout (log1p CP10k in X, counts in a layer)."""
    p = params if isinstance(params, PerturbSeqParams) else PerturbSeqParams.from_overrides(params)
    world = build_world(seed, world_params)
    design = design_experiment(world, p, seed)
    model = world.human
    keep = ~model.is_mito
    programme = world.program_inputs(p.cell_type)
    blocks, conditions = [], []
    for condition in design.conditions():
        rng = stream_rng(seed, f"perturbseq_{condition}")
        n = p.control_cells if condition == "ctrl" else p.cells_per_condition
        inputs = programme[None, :] * np.exp(rng.normal(0, p.activity_jitter, (n, len(programme))))
        logr = condition_log_rates(world, design, p, condition, inputs)
        logr += rng.normal(0, world.params.family_sd, (n, world.params.n_families)) @ model.family_membership
        library = np.exp(rng.normal(p.library_log_mean, p.library_log_sd, n))
        blocks.append(draw_counts(rng, softmax_rows(logr), library, world.params.nb_dispersion)[:, keep])
        conditions += [condition] * n
    counts = sp.csr_matrix(np.vstack(blocks).astype(np.float32))
    genes = model.genes.loc[keep, ["ensembl_id", "symbol"]].reset_index(drop=True)
    obs = pd.DataFrame({
        "condition": pd.Categorical(conditions, categories=design.conditions()),
        "cell_type": p.cell_type,
        "dose_val": ["1" if c == "ctrl" else "+".join(["1"] * 2) for c in conditions],
        "control": [int(c == "ctrl") for c in conditions],
        "guide_mode": ["+".join(design.modes[g] for g in condition_genes(c)) or "control" for c in conditions],
    }, index=[f"cell{i:05d}" for i in range(len(conditions))])
    obs["condition_name"] = [f"{p.cell_type}_{c}_{d}" for c, d in zip(obs["condition"], obs["dose_val"])]
    var = pd.DataFrame({"gene_name": genes["symbol"].to_numpy()},
                       index=pd.Index(genes["ensembl_id"].to_numpy(), name="gene_id"))
    adata = ad.AnnData(counts, obs=obs, var=var)
    adata.layers["counts"] = counts.copy()
    totals = np.asarray(counts.sum(axis=1)).ravel()
    adata.X = sp.csr_matrix(sp.diags(1e4 / np.maximum(totals, 1)) @ counts).log1p().astype(np.float32)
    return adata, design, world


# ---------------------------------------------------------------------------
# Genetic interactions (Norman's GI map) and perturbation-specific variance
# ---------------------------------------------------------------------------


def fit_interaction(delta_a: np.ndarray, delta_b: np.ndarray, delta_ab: np.ndarray, seed: int = 0) -> dict:
    """Theil-Sen fit delta_AB ~ c1 delta_A + c2 delta_B over genes, as in Norman's GI map."""
    from sklearn.linear_model import TheilSenRegressor

    design = np.column_stack([delta_a, delta_b])
    fit = TheilSenRegressor(fit_intercept=False, random_state=seed, max_subpopulation=2000).fit(design, delta_ab)
    c1, c2 = fit.coef_
    fitted = design @ fit.coef_
    corr = float(np.corrcoef(fitted, delta_ab)[0, 1]) if fitted.std() > 0 and delta_ab.std() > 0 else 0.0
    return {"coef_first": float(c1), "coef_second": float(c2), "magnitude": float(np.hypot(c1, c2)),
            "fit_corr": corr, "dominance": float(abs(np.log(max(abs(c1), 1e-6) / max(abs(c2), 1e-6))))}


def classify_interactions(table: pd.DataFrame) -> pd.DataFrame:
    """Flags of each GI class from magnitude / fit_corr / dominance columns."""
    return pd.DataFrame({
        "synergy": table["magnitude"] >= SYNERGY_MAGNITUDE,
        "buffering": table["magnitude"] <= BUFFERING_MAGNITUDE,
        "neomorphic": table["fit_corr"] < NEOMORPHIC_FIT,
        "epistatic": table["dominance"] >= EPISTATIC_DOMINANCE,
    }, index=table.index)


def interaction_table(profiles: pd.DataFrame, doubles, min_change: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """GI fit of each double from condition-mean log profiles (rows: conditions, incl. 'ctrl').

    Each change profile is centred on its median gene first: total-count
    normalisation shifts every gene when a few strongly expressed ones rise, and
    that near-constant shift would make the two singles collinear. Genes enter
    the fit when any of the three conditions moves them by ``min_change``.
    """
    ctrl = profiles.loc["ctrl"].to_numpy()

    def change(condition):
        delta = profiles.loc[condition].to_numpy() - ctrl
        return delta - np.median(delta)

    rows = []
    for a, b in doubles:
        da, db, dab = change(f"{a}+ctrl"), change(f"{b}+ctrl"), change(f"{a}+{b}")
        moved = (np.abs(np.vstack([da, db, dab])) >= min_change).any(axis=0)
        rows.append({"condition": f"{a}+{b}", "n_genes": int(moved.sum()),
                     **fit_interaction(da[moved], db[moved], dab[moved], seed)})
    table = pd.DataFrame(rows).set_index("condition")
    return table.join(classify_interactions(table))


def real_interaction_classes(regression_fits: str | Path) -> pd.DataFrame:
    """Norman's published fits (regr_fits_final.csv) in `interaction_table`'s columns and classes."""
    fits = pd.read_csv(regression_fits)
    c1, c2 = fits["ts_coef_first"], fits["ts_coef_second"]
    table = pd.DataFrame({"coef_first": c1, "coef_second": c2, "magnitude": np.hypot(c1, c2),
                          "fit_corr": fits["corr_fit"],
                          "dominance": np.abs(np.log(np.abs(c1) / np.abs(c2)))}).set_index(fits["name"])
    return table.join(classify_interactions(table))


def truth_profiles(world: World, design: Design, p: PerturbSeqParams, genes: np.ndarray) -> pd.DataFrame:
    keep = np.flatnonzero(~world.human.is_mito)
    return pd.DataFrame([expected_log_expression(world, design, p, c)[keep] for c in design.conditions()],
                        index=design.conditions(), columns=genes)


def demo_gene_sets(world: World, seed: int, keep: float = 0.8, extra: float = 0.1,
                   n_random: int = 40) -> dict[str, list[str]]:
    """GO-like biological-process sets of the world's human genes, imperfect like real annotation.

    One set per TF (the TF and its planted targets), one per gene family, and
    ``n_random`` sets of unrelated genes; each set keeps a ``keep`` share of
    its members and gains ``extra`` as many random genes.
    """
    rng = stream_rng(seed, "perturbseq_gene_sets")
    model = world.human
    symbols = model.genes["symbol"].to_numpy()
    usable = np.flatnonzero(~model.is_mito)
    raw = {}
    for idx, row in enumerate(model.tf_gene_index):
        raw[f"GO_REGULATION_BY_{symbols[row]}"] = np.union1d([row], np.flatnonzero(model.weights[idx]))
    for fam, members in enumerate(model.family_membership):
        raw[f"GO_FAMILY_PROCESS_{fam:02d}"] = np.flatnonzero(members)
    for i in range(n_random):
        raw[f"GO_UNRELATED_PROCESS_{i:02d}"] = rng.choice(usable, rng.integers(8, 40), replace=False)
    sets = {}
    for name, rows in raw.items():
        kept = rows[rng.random(len(rows)) < keep]
        added = rng.choice(usable, max(1, round(extra * len(rows))), replace=False)
        sets[name] = sorted(set(symbols[np.union1d(kept, added)]))
    return sets


def write_gmt(sets: dict[str, list[str]], path) -> None:
    from genecompass.utils import atomic_output

    with atomic_output(path) as tmp, open(tmp, "w") as handle:
        for name, genes in sets.items():
            handle.write("\t".join([name, "demo", *genes]) + "\n")


def write_perturbseq(outdir, seed: int, world_params: dict | None = None, params: dict | None = None) -> dict:
    """Write the demo experiment: ``perturb_processed.h5ad``, ``design.tsv``, ``interactions_truth.tsv``
    and the GO-like gene sets ``go_bp.gmt``."""
    from genecompass.utils import atomic_output

    p = PerturbSeqParams.from_overrides(params)
    adata, design, world = simulate_perturbseq(seed, world_params, p)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"h5ad": out / "perturb_processed.h5ad", "design": out / "design.tsv",
             "interactions": out / "interactions_truth.tsv", "go": out / "go_bp.gmt"}
    write_gmt(demo_gene_sets(world, seed), paths["go"])
    with atomic_output(paths["h5ad"]) as tmp:
        adata.write_h5ad(tmp, compression="gzip")
    rows = [{"gene": g, "mode": m, "is_tf": g in design.tf_index, "in_doubles": any(g in d for d in design.doubles)}
            for g, m in design.modes.items()]
    with atomic_output(paths["design"]) as tmp:
        pd.DataFrame(rows).to_csv(tmp, sep="\t", index=False)
    truth = interaction_table(truth_profiles(world, design, p, adata.var["gene_name"].to_numpy()), design.doubles,
                              seed=seed)
    truth.insert(0, "planted", [design.planted.get(tuple(c.split("+")), ("none",))[0] for c in truth.index])
    with atomic_output(paths["interactions"]) as tmp:
        truth.to_csv(tmp, sep="\t")
    return {k: str(v) for k, v in paths.items()}
