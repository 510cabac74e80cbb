"""A deterministic synthetic "demo world" that looks like real GeneCompass inputs.

The world has two species (human, mouse) whose genes, orthologs, TF→target
network, HGNC-like gene families, promoter sequences and single-cell count
matrices are generated from one seed. Cell types are driven by TF programmes
through a log-linear model, so everything written under ``truth/`` can later be
checked against what the pipeline recovers (QC, cell types, GRN, families).

Public entry points:

- :class:`WorldParams` — every tunable default (frozen dataclass).
- :func:`build_world` — the :class:`World` (genes, orthologs, networks,
  families, motifs, cell-type programmes) without any cells; later experiments
  (Perturb-seq, dose-response, fate transitions) reuse it through
  :meth:`World.tf_activity` and :meth:`World.expected_expression`.
- :func:`simulate_sample` — one sample's counts and cell labels.
- :func:`simulate_world` — writes all files under ``outdir``; same seed and
  params give byte-identical files.

Generative model (per species, per cell ``c`` and non-mitochondrial gene ``g``)::

    a_c        = propagate(programme[type_c] * jitter)      # TF activities
    log r_cg   = log b_g + sum_t a_ct W_tg + gain * a_c,TF(g)  # World.log_rates
                 + sum_f z_cf M_fg                           # family co-expression
                 + log batch_sg                              # sample effect
    p_cg       = softmax_g(log r_cg)
    counts     ~ NegBinomial(mean = L_c p_cg, dispersion phi)

Mitochondrial genes receive a planted fraction of each cell's counts; the
library size ``L_c`` is chosen so that the expected number of detected genes
hits a target drawn uniformly from a bounded range (this keeps the gene-count
distribution light-tailed so the ±3 SD QC filter removes no "ok" cell).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = [
    "WorldParams",
    "SpeciesModel",
    "World",
    "SampleLayout",
    "SAMPLE_LAYOUTS",
    "PLANTED_BOUNDS",
    "build_world",
    "simulate_sample",
    "assign_cells",
    "draw_cell_shares",
    "draw_cell_counts",
    "simulate_world",
    "planted_qc_keep",
]

# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

HUMAN_MT_PROTEIN = (
    "MT-ND1", "MT-ND2", "MT-CO1", "MT-CO2", "MT-ATP8", "MT-ATP6", "MT-CO3",
    "MT-ND3", "MT-ND4L", "MT-ND4", "MT-ND5", "MT-ND6", "MT-CYB",
)
MOUSE_MT_PROTEIN = (
    "mt-Nd1", "mt-Nd2", "mt-Co1", "mt-Co2", "mt-Atp8", "mt-Atp6", "mt-Co3",
    "mt-Nd3", "mt-Nd4l", "mt-Nd4", "mt-Nd5", "mt-Nd6", "mt-Cytb",
)
HUMAN_MT_TRNA = ("MT-TF", "MT-TV")
MOUSE_MT_TRNA = ("mt-Tf", "mt-Tv")
# Share of mitochondrial UMIs per MT gene (COX/ATP6/CYB dominate 10x data;
# tRNAs are barely captured by poly-A chemistry).
MT_WEIGHTS = np.array(
    [6, 4, 20, 14, 2, 12, 14, 3, 1.5, 8, 4, 1.5, 9, 0.3, 0.2], dtype=float
)

NONCORE_BIOTYPES = ("processed_pseudogene", "unprocessed_pseudogene", "snRNA", "misc_RNA")
CELL_TYPE_NAMES = (
    "stem_like", "epithelial_like", "immune_like", "neural_like", "stromal_like",
    "endothelial_like", "muscle_like", "hepatic_like",
)
FAMILY_NAMES = (
    "Solute carriers", "Zinc fingers C2H2-type", "Kinesins", "Keratins",
    "Ring finger proteins", "Ankyrin repeat domain containing", "WD repeat domain containing",
    "Tetratricopeptide repeat domain containing", "Coiled-coil domain containing",
    "Leucine rich repeat containing", "Cadherins", "Integrin subunits", "Collagens",
    "Small GTPases", "Tubulins", "Myosins", "Claudins", "Serpin peptidase inhibitors",
    "Chemokine ligands", "Interleukins", "Protein phosphatase catalytic subunits",
    "Ubiquitin specific peptidases", "Potassium voltage-gated channels",
    "Aldehyde dehydrogenases", "Cytochrome P450s", "ATP binding cassette transporters",
    "Proteasome subunits", "Histone deacetylases", "Annexins", "Galectins",
    "Sorting nexins", "Dual specificity phosphatases", "Heat shock proteins",
    "Transmembrane proteins", "Sushi domain containing", "Fibronectin type III domain containing",
    "Armadillo repeat containing", "Glutathione S-transferases", "Lipocalins", "Peroxiredoxins",
)
# symbol stems must not look like mitochondrial, miRNA, lncRNA or placeholder names
_RESERVED_PREFIXES = ("MT", "MIT", "MIR", "LINC", "LOC", "GM", "RNU", "RN7", "RNY", "SNOR")

# Planted quality bounds that QC must recover exactly (the simulator re-checks
# them on every sample and raises if a draw ever violated them).
PLANTED_BOUNDS = {
    "ok": {"n_genes": (250, 700), "mito_fraction": (0.01, 0.08)},
    "low_genes": {"n_genes": (30, 150)},
    "high_mito": {"n_genes": (250, 700), "mito_fraction": (0.25, 0.60)},
}
# The published QC thresholds the planting is designed around.
QC_MIN_GENES = 200
QC_MIN_CODING_GENES = 7
QC_MAX_MITO = 0.15
QC_MAX_SD = 3.0
# Ok cells must sit well inside ±3 SD so summing duplicate genes or dropping
# unmapped symbols during harmonisation cannot push one over.
OK_MAX_ABS_Z = 2.6


@dataclass(frozen=True)
class SampleLayout:
    """How one sample is written: name, species, file format, identifier style."""

    name: str
    species: str
    fmt: str  # h5ad, 10x_h5, 10x_mtx (as in the sample sheet)
    ids: str  # ensembl, ensembl_versioned, symbol, 10x (IDs + names)
    path: str  # relative to outdir
    donor: str


SAMPLE_LAYOUTS = (
    SampleLayout("human_s1", "human", "h5ad", "ensembl_versioned", "counts/human_s1.h5ad", "HD1"),
    SampleLayout("human_s2", "human", "h5ad", "symbol", "counts/human_s2.h5ad", "HD2"),
    SampleLayout("human_s3", "human", "10x_h5", "10x", "counts/human_s3.h5", "HD3"),
    SampleLayout("mouse_s1", "mouse", "h5ad", "ensembl", "counts/mouse_s1.h5ad", "MD1"),
    SampleLayout("mouse_s2", "mouse", "10x_mtx", "10x", "counts/mouse_s2", "MD2"),
)


# ---------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WorldParams:
    """All defaults of the synthetic world. Ranges are inclusive (lo, hi)."""

    # genes
    n_human_genes: int = 1200
    n_mouse_genes: int = 1150
    frac_lncrna: float = 0.13
    frac_mirna: float = 0.06
    frac_noncore: float = 0.09  # pseudogenes, snRNA, misc_RNA: dropped by QC
    frac_human_only_protein_coding: float = 0.04
    frac_lncrna_with_ortholog: float = 0.5
    frac_mirna_with_ortholog: float = 0.65
    n_one2many: int = 6  # human genes with two mouse copies
    n_many2many_groups: int = 2  # groups of 2 human x 2 mouse genes
    n_unknown_symbols: int = 5  # LOC symbols added to the symbol-keyed sample
    # regulatory network. Strong, mostly activating edges and a high self gain put each cell type's
    # programme (its drivers and their targets) among the top-ranked genes the model reads; with
    # weak edges the top-128 tokens were mostly count noise and pretraining learned nothing. A low
    # coupling keeps the cascade moderate, so a TF's dosage reach still follows its out-degree.
    n_tfs: int = 40
    targets_per_tf: tuple[int, int] = (10, 30)
    activation_prob: float = 0.9
    effect_size: tuple[float, float] = (1.5, 2.5)  # |log effect| of an edge
    n_mouse_dropped_edges: int = 6
    n_mouse_specific_edges: int = 10
    tf_coupling: float = 0.2  # how strongly upstream TF activity drives downstream TFs
    tf_max_activity: float = 3.0
    tf_self_gain: float = 4.0  # an active TF's own mRNA rises by exp(gain * activity)
    # gene families
    n_families: int = 30
    family_size: tuple[int, int] = (4, 22)  # primary members; second memberships add a few
    n_multi_family_genes: int = 12
    family_sd: float = 1.0  # per-cell shared log factor of a family
    # cell types and expression
    n_cell_types: int = 5
    drivers_per_type: int = 4
    activity_jitter: float = 0.15  # per-cell lognormal sd of programme activity
    baseline_log_sd: float = 1.5
    mouse_baseline_shift_sd: float = 0.3
    batch_sd: float = 0.2
    nb_dispersion: float = 0.15  # 0 gives Poisson counts
    # samples and quality planting
    cells_per_sample: int = 300
    frac_low_genes: float = 0.06
    frac_high_mito: float = 0.06
    ok_detected_genes: tuple[int, int] = (290, 640)  # target expected non-MT genes
    low_detected_genes: tuple[int, int] = (45, 125)
    ok_mito_fraction: tuple[float, float] = (0.015, 0.07)
    high_mito_fraction: tuple[float, float] = (0.28, 0.55)
    # promoters and motifs
    promoter_upstream: int = 500
    promoter_downstream: int = 2000
    promoter_gc: float = 0.42
    motif_length: tuple[int, int] = (8, 12)
    motif_copies: int = 6
    family_motif_copies: int = 6
    motif_mutation: float = 0.05
    promoter_divergence: float = 0.15  # substitution rate mouse vs human promoter

    def __post_init__(self) -> None:
        for name in ("targets_per_tf", "effect_size", "family_size", "ok_detected_genes",
                     "low_detected_genes", "ok_mito_fraction", "high_mito_fraction",
                     "motif_length"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"WorldParams.{name}: low end {lo} exceeds high end {hi}")
        if self.n_cell_types > len(CELL_TYPE_NAMES):
            raise ValueError(f"WorldParams.n_cell_types: at most {len(CELL_TYPE_NAMES)}")
        if self.n_cell_types * self.drivers_per_type > self.n_tfs:
            raise ValueError("WorldParams.n_tfs: fewer TFs than n_cell_types * drivers_per_type")
        if self.n_families > len(FAMILY_NAMES):
            raise ValueError(f"WorldParams.n_families: at most {len(FAMILY_NAMES)}")

    @classmethod
    def from_overrides(cls, params: dict | None) -> WorldParams:
        """Defaults with ``params`` overriding fields; unknown keys raise ValueError."""
        params = dict(params or {})
        known = {f.name: f for f in dataclasses.fields(cls)}
        for key in params:
            if key not in known:
                raise ValueError(f"unknown WorldParams field '{key}'; known: {sorted(known)}")
        for key, value in params.items():
            if isinstance(value, list):  # YAML/JSON give lists for tuple fields
                params[key] = tuple(value)
        return cls(**params)

    @property
    def promoter_length(self) -> int:
        return self.promoter_upstream + self.promoter_downstream


# ---------------------------------------------------------------------------
# World objects
# ---------------------------------------------------------------------------


@dataclass
class SpeciesModel:
    """One species' genes and expression model, aligned with ``genes`` rows."""

    species: str
    genes: pd.DataFrame  # ensembl_id, symbol, biotype (row order = model order)
    log_baseline: np.ndarray  # (n_genes,), unused (-inf) for MT genes
    is_mito: np.ndarray  # (n_genes,) bool
    mito_weights: np.ndarray  # (n_genes,) share of mito UMIs, 0 for non-MT
    tf_gene_index: np.ndarray  # (n_tfs,) row of each TF's gene, aligned with World.tfs
    weights: np.ndarray  # (n_tfs, n_genes) signed log effect of TF activity on genes
    family_membership: np.ndarray  # (n_families, n_genes) bool
    promoters: list[str]
    versions: np.ndarray  # Ensembl version suffix per gene

    @property
    def n_genes(self) -> int:
        return len(self.genes)


@dataclass
class World:
    """Everything of the synthetic world except the cells."""

    params: WorldParams
    seed: int
    human: SpeciesModel
    mouse: SpeciesModel
    orthologs: pd.DataFrame  # one row per human gene or pair (BioMart-like, tidy names)
    tfs: pd.DataFrame  # tf_index, human/mouse ensembl_id and symbol, hierarchy order
    networks: dict[str, pd.DataFrame]  # species -> source, target, mode, weight (+ ids)
    families: pd.DataFrame  # family_id, name, stem
    cell_types: list[str]
    programs: np.ndarray  # (n_cell_types, n_tfs) input activity of each TF per type
    motifs: pd.DataFrame  # motif, consensus, kind, owner, owner_id
    hgnc: pd.DataFrame  # HGNC complete-set layout
    unknown_symbols: list[str]  # symbols in human_s2 that no gene table knows
    ambiguous_symbol: str

    def species_model(self, species: str) -> SpeciesModel:
        if species == "human":
            return self.human
        if species == "mouse":
            return self.mouse
        raise ValueError(f"species must be 'human' or 'mouse', got {species!r}")

    def program_inputs(self, cell_type: str) -> np.ndarray:
        """Input (pre-propagation) TF activities of a cell type's programme."""
        return self.programs[self.cell_types.index(cell_type)].copy()

    def tf_activity(self, inputs: np.ndarray, species: str, knockout=(), dosage=None) -> np.ndarray:
        """Effective TF activities after propagation down the TF hierarchy.

        ``inputs`` is (n_cells, n_tfs) or (n_tfs,). TF ``j`` receives
        ``inputs[j] + coupling * sum_i a_i W[i, TF_j]``; edges only run from a
        TF to TFs later in the hierarchy, so one pass in order is exact.
        ``knockout`` (TF indices) forces those activities to zero, and the
        effect propagates to downstream TFs and all targets. ``dosage`` (TF
        index -> factor) scales those activities instead (0.5: one copy lost).
        """
        model = self.species_model(species)
        inputs = np.asarray(inputs, dtype=float)
        single = inputs.ndim == 1
        inputs = np.atleast_2d(inputs)
        tf_to_tf = model.weights[:, model.tf_gene_index]
        knocked = set(int(k) for k in knockout)
        act = np.zeros_like(inputs)
        for j in range(inputs.shape[1]):
            if j in knocked:
                continue
            drive = inputs[:, j] + self.params.tf_coupling * (act[:, :j] @ tf_to_tf[:j, j])
            act[:, j] = np.clip(drive, 0.0, self.params.tf_max_activity)
            if dosage and j in dosage:
                act[:, j] *= float(dosage[j])
        return act[0] if single else act

    def log_rates(self, activity: np.ndarray, species: str, knockdown=(),
                  knockdown_log_effect: float = -2.5) -> np.ndarray:
        """Unnormalised log expression of non-MT genes given effective TF activities.

        ``knockdown`` lists gene rows whose own expression is lowered by
        ``knockdown_log_effect`` (CRISPRi-like); to propagate a TF knock-down,
        also pass that TF to :meth:`tf_activity` as ``knockout``. MT genes are
        ``-inf`` (their share is set separately, see ``expected_expression``).
        """
        model = self.species_model(species)
        activity = np.atleast_2d(np.asarray(activity, dtype=float))
        logr = model.log_baseline[None, :] + activity @ model.weights
        logr[:, model.tf_gene_index] += self.params.tf_self_gain * activity
        if len(knockdown):
            logr[:, np.asarray(knockdown, dtype=int)] += knockdown_log_effect
        logr[:, model.is_mito] = -np.inf
        return logr

    def expected_expression(self, activity: np.ndarray, species: str,
                            mito_fraction: float = 0.04, knockdown=()) -> np.ndarray:
        """Expected share of a cell's UMIs per gene (rows sum to 1).

        Ignores the cell-level noise terms (family factors, batch, library
        size, count noise), i.e. the mean programme of a cell with these TF
        activities. Multiply by a library size for expected counts.
        """
        model = self.species_model(species)
        share = softmax_rows(self.log_rates(activity, species, knockdown=knockdown))
        share *= 1.0 - mito_fraction
        share[:, model.is_mito] = mito_fraction * model.mito_weights[model.is_mito]
        return share

    def cell_type_expression(self, cell_type: str, species: str) -> np.ndarray:
        """Expected expression shares of a cell type's mean programme."""
        act = self.tf_activity(self.program_inputs(cell_type), species)
        return self.expected_expression(act, species)[0]


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def stream_rng(seed: int, stream: str) -> np.random.Generator:
    """Independent random stream per component, so adding one changes no other."""
    return np.random.default_rng([int(seed), zlib.crc32(stream.encode())])


def softmax_rows(logr: np.ndarray) -> np.ndarray:
    finite_max = np.max(np.where(np.isfinite(logr), logr, -np.inf), axis=1, keepdims=True)
    e = np.exp(logr - finite_max)
    return e / e.sum(axis=1, keepdims=True)


def _split_count(total: int, fractions: np.ndarray) -> np.ndarray:
    """Integer counts summing to ``total`` closest to ``total * fractions``."""
    raw = total * np.asarray(fractions, dtype=float) / np.sum(fractions)
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


_COMPLEMENT = str.maketrans("ACGT", "TGCA")


def reverse_complement(seq: str) -> str:
    return seq.translate(_COMPLEMENT)[::-1]


# ---------------------------------------------------------------------------
# Genes, symbols and orthologs
# ---------------------------------------------------------------------------


class _SymbolFactory:
    """Realistic-looking, unique gene symbols (case-insensitively unique)."""

    consonants = "BCDFGHKLMNPRSTVWXZ"
    vowels = "AEIOU"
    patterns = ("CVC", "CCVC", "CVCC", "CCC", "CVCV", "VCC")
    pattern_weights = np.array([0.25, 0.2, 0.15, 0.2, 0.1, 0.1])

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.used: set[str] = set()
        self.stems: set[str] = set()

    def claim(self, symbol: str) -> bool:
        key = symbol.upper()
        if key in self.used:
            return False
        self.used.add(key)
        return True

    def stem(self) -> str:
        while True:
            pattern = self.patterns[self.rng.choice(len(self.patterns), p=self.pattern_weights)]
            stem = "".join(
                self.consonants[self.rng.integers(len(self.consonants))] if ch == "C"
                else self.vowels[self.rng.integers(len(self.vowels))]
                for ch in pattern
            )
            if stem in self.stems or stem.startswith(_RESERVED_PREFIXES):
                continue
            self.stems.add(stem)
            return stem

    def protein_coding(self) -> str:
        while True:
            stem = self.stem()
            symbol = stem + str(self.rng.integers(1, 40)) if self.rng.random() < 0.75 else stem
            if self.claim(symbol):
                return symbol

    def family_members(self, n: int) -> list[str]:
        while True:
            stem = self.stem()
            numbers = np.sort(self.rng.choice(np.arange(1, 3 * n + 6), size=n, replace=False))
            symbols = [f"{stem}{k}" for k in numbers]
            if all(s.upper() not in self.used for s in symbols):
                for s in symbols:
                    self.claim(s)
                return symbols

    def numbered(self, prefix: str, lo: int, hi: int, suffix: str = "") -> str:
        while True:
            symbol = f"{prefix}{self.rng.integers(lo, hi)}{suffix}"
            if self.claim(symbol):
                return symbol

    def lncrna(self, protein_coding_symbols: list[str]) -> str:
        while True:
            if self.rng.random() < 0.5:
                symbol = f"LINC{self.rng.integers(0, 3000):05d}"
            else:
                host = protein_coding_symbols[self.rng.integers(len(protein_coding_symbols))]
                symbol = f"{host}-AS{self.rng.integers(1, 3)}"
            if self.claim(symbol):
                return symbol

    def noncore(self, biotype: str, protein_coding_symbols: list[str]) -> str:
        while True:
            host = protein_coding_symbols[self.rng.integers(len(protein_coding_symbols))]
            if biotype == "processed_pseudogene":
                symbol = f"{host}P{self.rng.integers(1, 12)}"
            elif biotype == "unprocessed_pseudogene":
                symbol = f"{host}P{self.rng.integers(12, 30)}"
            elif biotype == "snRNA":
                symbol = f"RNU6-{self.rng.integers(1, 1400)}P"
            else:  # misc_RNA
                symbol = f"RN7SL{self.rng.integers(1, 900)}P"
            if self.claim(symbol):
                return symbol


def _mouse_symbol(human_symbol: str) -> str:
    """Homologous mouse symbol: the same word, capitalised (KDR3 -> Kdr3)."""
    return human_symbol[:1] + human_symbol[1:].lower()


def _unique_ids(rng: np.random.Generator, n: int, prefix: str) -> list[str]:
    numbers = rng.choice(np.arange(1, 320000), size=n, replace=False)
    return [f"{prefix}{k:011d}" for k in numbers]


@dataclass
class _GeneDraft:
    """Working record of a gene while the world is assembled."""

    symbol: str
    biotype: str
    role: str = "plain"  # plain, tf, mito, family
    homology: str = "none"  # one2one, one2many, many2many, none
    family_ids: list[int] = dataclasses.field(default_factory=list)
    partners: list[int] = dataclasses.field(default_factory=list)  # mouse draft indices
    human_source: int = -1  # for mouse drafts: human draft the promoter derives from
    ensembl_id: str = ""


def _draw_family_sizes(p: WorldParams, rng: np.random.Generator) -> np.ndarray:
    lo, hi = p.family_size
    sizes = np.clip(np.round(np.exp(rng.normal(np.log(8), 0.55, p.n_families))), lo, hi)
    sizes[0], sizes[1] = hi, lo  # always span the whole range
    return sizes.astype(int)


def build_genes(p: WorldParams, rng: np.random.Generator):
    """Human and mouse gene drafts with homology, TF and family roles.

    Returns ``(human, mouse, tf_rows, families, ambiguous_symbol)`` where
    ``human``/``mouse`` are lists of :class:`_GeneDraft` in creation order.
    """
    names = _SymbolFactory(rng)
    n_lnc = round(p.frac_lncrna * p.n_human_genes)
    n_mir = round(p.frac_mirna * p.n_human_genes)
    n_noncore = round(p.frac_noncore * p.n_human_genes)
    n_mt = len(HUMAN_MT_PROTEIN) + len(HUMAN_MT_TRNA)
    n_pc = p.n_human_genes - n_lnc - n_mir - n_noncore - n_mt  # nuclear protein coding

    human: list[_GeneDraft] = []
    # Families first: members share a symbol stem as HGNC groups often do.
    sizes = _draw_family_sizes(p, rng)
    if sizes.sum() > 0.6 * n_pc:
        raise ValueError("WorldParams: gene families would use more than 60% of protein coding genes")
    fam_names = [FAMILY_NAMES[i] for i in rng.permutation(len(FAMILY_NAMES))[: p.n_families]]
    families = []
    for fam, size in enumerate(sizes):
        symbols = names.family_members(int(size))
        families.append({"family_id": 100 + 7 * fam + int(rng.integers(0, 7)),
                         "name": fam_names[fam], "stem": symbols[0].rstrip("0123456789")})
        for s in symbols:
            human.append(_GeneDraft(s, "protein_coding", role="family", family_ids=[fam]))
    while len(human) < n_pc - 1:  # one slot is kept for the ambiguous duplicate
        human.append(_GeneDraft(names.protein_coding(), "protein_coding"))
    pc_symbols = [g.symbol for g in human]

    # A few genes belong to a second family (HGNC joins them with '|').
    family_genes = [i for i, g in enumerate(human) if g.role == "family"]
    n_members = np.bincount([g.family_ids[0] for g in human if g.role == "family"],
                            minlength=p.n_families)
    for i in rng.choice(family_genes, size=p.n_multi_family_genes, replace=False):
        options = [f for f in range(p.n_families)
                   if f != human[i].family_ids[0] and n_members[f] < p.family_size[1] + 3]
        second = int(rng.choice(options))
        human[i].family_ids.append(second)
        n_members[second] += 1

    for s_h in HUMAN_MT_PROTEIN:
        human.append(_GeneDraft(s_h, "protein_coding", role="mito", homology="one2one"))
        names.claim(s_h)
    for s_h in HUMAN_MT_TRNA:
        human.append(_GeneDraft(s_h, "Mt_tRNA", role="mito", homology="one2one"))
        names.claim(s_h)
    for _ in range(n_lnc):
        human.append(_GeneDraft(names.lncrna(pc_symbols), "lncRNA"))
    for _ in range(n_mir):
        human.append(_GeneDraft(names.numbered("MIR", 1, 9000), "miRNA"))
    noncore_biotypes = np.repeat(NONCORE_BIOTYPES, _split_count(n_noncore, np.ones(4)))
    for biotype in noncore_biotypes:
        human.append(_GeneDraft(names.noncore(str(biotype), pc_symbols), str(biotype)))

    # Homology classes of nuclear protein-coding genes.
    pc_idx = np.array([i for i, g in enumerate(human) if g.biotype == "protein_coding" and g.role != "mito"])
    for i in pc_idx:
        human[i].homology = "one2one"
    plain_pc = [i for i in pc_idx if human[i].role == "plain"]
    # TFs: one2one protein-coding genes outside the families (list order = hierarchy).
    tf_rows = [int(i) for i in rng.choice(plain_pc, size=p.n_tfs, replace=False)]
    for i in tf_rows:
        human[i].role = "tf"
    free = [int(i) for i in pc_idx if human[i].role != "tf" and len(human[i].family_ids) < 2]
    # many2many: pairs of human genes from the same family map to a pair of mouse genes
    by_family: dict[int, list[int]] = {}
    for i in free:
        if human[i].role == "family":
            by_family.setdefault(human[i].family_ids[0], []).append(i)
    big_families = [f for f, members in sorted(by_family.items()) if len(members) >= 6]
    many2many_groups = []
    for f in rng.choice(big_families, size=p.n_many2many_groups, replace=False):
        pair = [int(i) for i in rng.choice(by_family[int(f)], size=2, replace=False)]
        many2many_groups.append(pair)
        for i in pair:
            human[i].homology = "many2many"
    free = [i for i in free if human[i].homology == "one2one"]
    for i in rng.choice(free, size=p.n_one2many, replace=False):
        human[int(i)].homology = "one2many"
    free = [i for i in free if human[i].homology == "one2one"]
    n_human_only = round(p.frac_human_only_protein_coding * len(pc_idx))
    for i in rng.choice(free, size=n_human_only, replace=False):
        human[int(i)].homology = "none"
    for biotype, frac in (("lncRNA", p.frac_lncrna_with_ortholog), ("miRNA", p.frac_mirna_with_ortholog)):
        rows = [i for i, g in enumerate(human) if g.biotype == biotype]
        for i in rng.choice(rows, size=round(frac * len(rows)), replace=False):
            human[int(i)].homology = "one2one"

    # The planted ambiguous symbol: a human-only duplicate locus of a one2one gene.
    candidates = [i for i in pc_idx if human[i].role == "plain" and human[i].homology == "one2one"]
    source = int(rng.choice(candidates))
    ambiguous_symbol = human[source].symbol
    human.append(_GeneDraft(ambiguous_symbol, "protein_coding", role="plain", homology="none"))

    # Mouse genes: orthologs first, then mouse-only genes.
    mouse: list[_GeneDraft] = []
    mt_map = dict(zip(HUMAN_MT_PROTEIN + HUMAN_MT_TRNA, MOUSE_MT_PROTEIN + MOUSE_MT_TRNA))
    mouse_names = _SymbolFactory(rng)
    mouse_names.used = set(names.used)  # mouse-only symbols must not look homologous
    mouse_names.stems = set(names.stems)
    for i, g in enumerate(human):
        if g.homology == "one2one":
            symbol = mt_map.get(g.symbol, _mouse_symbol(g.symbol))
            g.partners = [len(mouse)]
            mouse.append(_GeneDraft(symbol, g.biotype, role=g.role, homology="one2one", human_source=i))
        elif g.homology == "one2many":
            base = _mouse_symbol(g.symbol)
            suffixes = ("a", "b") if base[-1].isdigit() else ("1", "2")
            g.partners = [len(mouse), len(mouse) + 1]
            for suffix in suffixes:
                if not mouse_names.claim(base + suffix):
                    raise RuntimeError(f"mouse symbol clash for {base + suffix}")
                mouse.append(_GeneDraft(base + suffix, g.biotype, homology="one2many", human_source=i))
    for pair in many2many_groups:
        mouse_rows = []
        for i in pair:
            mouse_rows.append(len(mouse))
            mouse.append(_GeneDraft(_mouse_symbol(human[i].symbol), "protein_coding",
                                    homology="many2many", human_source=i))
        for i in pair:
            human[i].partners = list(mouse_rows)

    n_mouse_only = p.n_mouse_genes - len(mouse)
    if n_mouse_only < 0:
        raise ValueError("WorldParams.n_mouse_genes: smaller than the number of mouse orthologs")
    n_m_noncore = min(round(p.frac_noncore * p.n_mouse_genes), n_mouse_only)
    n_m_pc, n_m_lnc, n_m_mir = _split_count(n_mouse_only - n_m_noncore, np.array([0.45, 0.45, 0.10]))
    for _ in range(n_m_pc):
        mouse.append(_GeneDraft(_mouse_symbol(mouse_names.protein_coding()), "protein_coding"))
    for _ in range(n_m_lnc):
        mouse.append(_GeneDraft(mouse_names.numbered("Gm", 10000, 60000), "lncRNA"))
    for _ in range(n_m_mir):
        mouse.append(_GeneDraft(mouse_names.numbered("Mir", 9000, 9999), "miRNA"))
    for biotype in np.repeat(NONCORE_BIOTYPES, _split_count(n_m_noncore, np.ones(4))):
        mouse.append(_GeneDraft(mouse_names.numbered("Gm", 10000, 60000), str(biotype)))

    for g, gid in zip(human, _unique_ids(rng, len(human), "ENSG")):
        g.ensembl_id = gid
    for g, gid in zip(mouse, _unique_ids(rng, len(mouse), "ENSMUSG")):
        g.ensembl_id = gid
    return human, mouse, tf_rows, families, ambiguous_symbol


def _gene_table(drafts: list[_GeneDraft]) -> tuple[pd.DataFrame, np.ndarray]:
    """Gene table sorted by Ensembl ID, and the draft index of each row."""
    table = pd.DataFrame({
        "ensembl_id": [g.ensembl_id for g in drafts],
        "symbol": [g.symbol for g in drafts],
        "biotype": [g.biotype for g in drafts],
    })
    order = np.argsort(table["ensembl_id"].to_numpy(), kind="stable")
    return table.iloc[order].reset_index(drop=True), order


def build_ortholog_table(human: list[_GeneDraft], mouse: list[_GeneDraft],
                         rng: np.random.Generator) -> pd.DataFrame:
    """Tidy ortholog table: one row per pair, plus rows for human genes without one."""
    rows = []
    for g in sorted(human, key=lambda d: d.ensembl_id):
        if g.homology == "none":
            rows.append((g.ensembl_id, g.symbol, "", "", "", None, None))
            continue
        for m in g.partners:
            if g.homology == "one2one":
                confidence = int(rng.random() < 0.92)
                goc = int(rng.choice([100, 100, 100, 75, 50, 25, 0]))
            else:
                confidence = int(rng.random() < 0.3)
                goc = int(rng.choice([75, 50, 25, 0]))
            rows.append((g.ensembl_id, g.symbol, mouse[m].symbol, mouse[m].ensembl_id,
                         f"ortholog_{g.homology}", confidence, goc))
    return pd.DataFrame(rows, columns=["human_id", "human_symbol", "mouse_symbol", "mouse_id",
                                       "homology_type", "confidence", "goc_score"])


# ---------------------------------------------------------------------------
# Regulatory network, families, programmes
# ---------------------------------------------------------------------------


def build_human_network(p: WorldParams, table: pd.DataFrame, tf_rows_tbl: np.ndarray,
                        rng: np.random.Generator) -> pd.DataFrame:
    """Signed TF->target edges on gene-table rows. A TF only targets TFs later in
    the hierarchy, which keeps activity propagation acyclic."""
    biotype = table["biotype"].to_numpy()
    is_mito = table["symbol"].str.upper().str.startswith("MT-").to_numpy()
    # the loci sharing the ambiguous symbol stay out of the network, so a
    # symbol-keyed reader of the GRN never has to guess which one is meant
    ambiguous = table["symbol"].duplicated(keep=False).to_numpy()
    core = np.isin(biotype, ("protein_coding", "lncRNA", "miRNA")) & ~is_mito & ~ambiguous
    tf_position = {int(r): k for k, r in enumerate(tf_rows_tbl)}
    # protein coding targets dominate TRRUST; non-coding targets are rarer
    weight = np.where(biotype == "protein_coding", 1.0, 0.35) * core
    edges = []
    for k, tf_row in enumerate(tf_rows_tbl):
        allowed = weight.copy()
        allowed[tf_row] = 0.0
        for row, pos in tf_position.items():
            if pos <= k:
                allowed[row] = 0.0
        n_targets = int(rng.integers(p.targets_per_tf[0], p.targets_per_tf[1] + 1))
        targets = rng.choice(len(table), size=n_targets, replace=False, p=allowed / allowed.sum())
        for t in np.sort(targets):
            sign = 1.0 if rng.random() < p.activation_prob else -1.0
            edges.append((k, int(tf_row), int(t), sign * rng.uniform(*p.effect_size)))
    return pd.DataFrame(edges, columns=["tf", "source_row", "target_row", "weight"])


def build_mouse_network(p: WorldParams, human_edges: pd.DataFrame, human_to_mouse: dict[int, int],
                        mouse_table: pd.DataFrame, mouse_tf_rows: np.ndarray,
                        rng: np.random.Generator) -> pd.DataFrame:
    """Human edges carried over one2one orthologs, minus a few, plus a few new ones."""
    carried = []
    for e in human_edges.itertuples(index=False):
        if e.target_row in human_to_mouse:
            carried.append((e.tf, int(mouse_tf_rows[e.tf]), human_to_mouse[e.target_row], e.weight))
    carried = pd.DataFrame(carried, columns=human_edges.columns)
    drop = rng.choice(len(carried), size=p.n_mouse_dropped_edges, replace=False)
    carried = carried.drop(index=carried.index[drop])
    biotype = mouse_table["biotype"].to_numpy()
    is_mito = mouse_table["symbol"].str.upper().str.startswith("MT-").to_numpy()
    core = np.flatnonzero(np.isin(biotype, ("protein_coding", "lncRNA", "miRNA")) & ~is_mito)
    tf_position = {int(r): k for k, r in enumerate(mouse_tf_rows)}
    existing = set(zip(carried["tf"], carried["target_row"]))
    new = []
    while len(new) < p.n_mouse_specific_edges:
        k = int(rng.integers(p.n_tfs))
        target = int(rng.choice(core))
        if (k, target) in existing or tf_position.get(target, p.n_tfs) <= k:
            continue
        existing.add((k, target))
        sign = 1.0 if rng.random() < p.activation_prob else -1.0
        new.append((k, int(mouse_tf_rows[k]), target, sign * rng.uniform(*p.effect_size)))
    edges = pd.concat([carried, pd.DataFrame(new, columns=carried.columns)], ignore_index=True)
    return edges.sort_values(["tf", "target_row"], kind="stable").reset_index(drop=True)


def build_programs(p: WorldParams) -> np.ndarray:
    """Input TF activity per cell type: own drivers at 1, plus half of the next
    type's first driver so programmes overlap a little."""
    programs = np.zeros((p.n_cell_types, p.n_tfs))
    for t in range(p.n_cell_types):
        programs[t, t * p.drivers_per_type:(t + 1) * p.drivers_per_type] = 1.0
        nxt = (t + 1) % p.n_cell_types
        programs[t, nxt * p.drivers_per_type] = 0.5
    return programs


def draw_baselines(biotypes: np.ndarray, is_tf: np.ndarray, sd: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Broad lognormal baseline rates; non-coding and TF genes are lower."""
    shift = pd.Series(biotypes).map(
        {"protein_coding": 0.0, "lncRNA": -0.8, "miRNA": -1.6}).fillna(-1.2).to_numpy()
    logb = rng.normal(0.0, sd, len(biotypes)) + shift
    logb[is_tf] = rng.normal(-0.5, 0.5, int(is_tf.sum()))
    return logb


# ---------------------------------------------------------------------------
# Promoters and motifs
# ---------------------------------------------------------------------------

_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)


def draw_motifs(n: int, length: tuple[int, int], rng: np.random.Generator) -> list[str]:
    """Distinct GC-rich consensus motifs (none equal to another's reverse complement)."""
    motifs: list[str] = []
    seen: set[str] = set()
    while len(motifs) < n:
        k = int(rng.integers(length[0], length[1] + 1))
        seq = "".join("ACGT"[i] for i in rng.choice(4, size=k, p=[0.2, 0.3, 0.3, 0.2]))
        if seq in seen or reverse_complement(seq) in seen or "AAAA" in seq or "TTTT" in seq:
            continue
        if seq == reverse_complement(seq):
            continue
        seen.add(seq)
        motifs.append(seq)
    return motifs


def background_promoters(n: int, length: int, gc: float, rng: np.random.Generator) -> np.ndarray:
    probs = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
    return rng.choice(4, size=(n, length), p=probs).astype(np.uint8)


def _encode(seq: str) -> np.ndarray:
    return np.array(["ACGT".index(c) for c in seq], dtype=np.uint8)


def plant_motifs(seqs: np.ndarray, plantings: list[tuple[int, str]], copies: int, mutation: float,
                 window: tuple[int, int], occupied: np.ndarray, rng: np.random.Generator) -> None:
    """Plant ``copies`` mutated copies (random strand) of each motif in its gene's promoter.

    Copies land at free positions inside ``window`` so motifs do not overwrite
    each other; each base mutates to another base with probability ``mutation``.
    """
    for row, motif in plantings:
        for _ in range(copies):
            site = motif if rng.random() < 0.5 else reverse_complement(motif)
            code = _encode(site)
            mutate = rng.random(len(code)) < mutation
            code[mutate] = (code[mutate] + rng.integers(1, 4, int(mutate.sum()))) % 4
            for _attempt in range(50):
                start = int(rng.integers(window[0], window[1] - len(code)))
                if not occupied[row, start:start + len(code)].any():
                    seqs[row, start:start + len(code)] = code
                    occupied[row, start:start + len(code)] = True
                    break


def diverge(seqs: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Substitute each base with a different one with probability ``rate``."""
    out = seqs.copy()
    mutate = rng.random(out.shape) < rate
    out[mutate] = (out[mutate] + rng.integers(1, 4, int(mutate.sum()))).astype(np.uint8) % 4
    return out


def _decode(seqs: np.ndarray) -> list[str]:
    return [_BASES[row].tobytes().decode() for row in seqs]


# ---------------------------------------------------------------------------
# Assembling the world
# ---------------------------------------------------------------------------


def build_world(seed: int, params: dict | WorldParams | None = None) -> World:
    """Build the deterministic world (no cells) for ``seed`` and ``params``."""
    p = params if isinstance(params, WorldParams) else WorldParams.from_overrides(params)
    human_d, mouse_d, tf_draft_rows, families, ambiguous = build_genes(p, stream_rng(seed, "genes"))
    human_table, human_order = _gene_table(human_d)
    mouse_table, mouse_order = _gene_table(mouse_d)
    h_row = np.empty(len(human_d), dtype=int)
    h_row[human_order] = np.arange(len(human_d))  # draft index -> table row
    m_row = np.empty(len(mouse_d), dtype=int)
    m_row[mouse_order] = np.arange(len(mouse_d))

    orthologs = build_ortholog_table(human_d, mouse_d, stream_rng(seed, "orthologs"))
    one2one = {int(h_row[i]): int(m_row[g.partners[0]])
               for i, g in enumerate(human_d) if g.homology == "one2one"}

    tf_rows_h = h_row[np.array(tf_draft_rows)]
    tf_rows_m = np.array([one2one[int(r)] for r in tf_rows_h])
    tfs = pd.DataFrame({
        "tf_index": np.arange(p.n_tfs),
        "human_ensembl_id": human_table["ensembl_id"].to_numpy()[tf_rows_h],
        "human_symbol": human_table["symbol"].to_numpy()[tf_rows_h],
        "mouse_ensembl_id": mouse_table["ensembl_id"].to_numpy()[tf_rows_m],
        "mouse_symbol": mouse_table["symbol"].to_numpy()[tf_rows_m],
    })

    net_rng = stream_rng(seed, "network")
    human_edges = build_human_network(p, human_table, tf_rows_h, net_rng)
    mouse_edges = build_mouse_network(p, human_edges, one2one, mouse_table, tf_rows_m, net_rng)

    # family membership (mouse through all orthologs of a member)
    fam_h = np.zeros((p.n_families, len(human_d)), dtype=bool)
    fam_m = np.zeros((p.n_families, len(mouse_d)), dtype=bool)
    for i, g in enumerate(human_d):
        for f in g.family_ids:
            fam_h[f, h_row[i]] = True
            for m in g.partners:
                fam_m[f, m_row[m]] = True
    families = pd.DataFrame(families)

    # baselines: mouse orthologs inherit the human rate with a small shift
    base_rng = stream_rng(seed, "baseline")
    is_tf_h = np.zeros(len(human_table), dtype=bool)
    is_tf_h[tf_rows_h] = True
    logb_h = draw_baselines(human_table["biotype"].to_numpy(), is_tf_h, p.baseline_log_sd, base_rng)
    is_tf_m = np.zeros(len(mouse_table), dtype=bool)
    is_tf_m[tf_rows_m] = True
    logb_m = draw_baselines(mouse_table["biotype"].to_numpy(), is_tf_m, p.baseline_log_sd, base_rng)
    for d_idx, g in enumerate(mouse_d):
        if g.human_source >= 0:
            shift = base_rng.normal(0, p.mouse_baseline_shift_sd)
            logb_m[m_row[d_idx]] = logb_h[h_row[g.human_source]] + shift

    models = {}
    for species, table, logb, tf_rows, edges, fam, mt_symbols in (
        ("human", human_table, logb_h, tf_rows_h, human_edges, fam_h, HUMAN_MT_PROTEIN + HUMAN_MT_TRNA),
        ("mouse", mouse_table, logb_m, tf_rows_m, mouse_edges, fam_m, MOUSE_MT_PROTEIN + MOUSE_MT_TRNA),
    ):
        is_mito = table["symbol"].str.upper().str.startswith("MT-").to_numpy()
        mito_weights = np.zeros(len(table))
        rows = pd.Series(np.arange(len(table)), index=table["symbol"].to_numpy())
        mito_weights[rows.loc[list(mt_symbols)].to_numpy()] = MT_WEIGHTS / MT_WEIGHTS.sum()
        weights = np.zeros((p.n_tfs, len(table)))
        weights[edges["tf"].to_numpy(), edges["target_row"].to_numpy()] = edges["weight"].to_numpy()
        logb = logb.copy()
        logb[is_mito] = -np.inf
        models[species] = SpeciesModel(
            species=species, genes=table, log_baseline=logb, is_mito=is_mito,
            mito_weights=mito_weights, tf_gene_index=np.asarray(tf_rows), weights=weights,
            family_membership=fam, promoters=[],
            versions=stream_rng(seed, f"versions_{species}").integers(1, 21, len(table)),
        )

    networks = {}
    for species, edges in (("human", human_edges), ("mouse", mouse_edges)):
        table = models[species].genes
        networks[species] = pd.DataFrame({
            "source": table["symbol"].to_numpy()[edges["source_row"].to_numpy()],
            "target": table["symbol"].to_numpy()[edges["target_row"].to_numpy()],
            "mode": np.where(edges["weight"].to_numpy() > 0, "Activation", "Repression"),
            "weight": edges["weight"].round(4).to_numpy(),
            "source_ensembl_id": table["ensembl_id"].to_numpy()[edges["source_row"].to_numpy()],
            "target_ensembl_id": table["ensembl_id"].to_numpy()[edges["target_row"].to_numpy()],
            "tf_index": edges["tf"].to_numpy(),
            "target_row": edges["target_row"].to_numpy(),
        })

    motifs = build_promoters(p, seed, models, networks, families, human_d, mouse_d, h_row, m_row)
    world = World(
        params=p, seed=seed, human=models["human"], mouse=models["mouse"], orthologs=orthologs,
        tfs=tfs, networks=networks, families=families,
        cell_types=list(CELL_TYPE_NAMES[: p.n_cell_types]), programs=build_programs(p),
        motifs=motifs, hgnc=pd.DataFrame(), unknown_symbols=[], ambiguous_symbol=ambiguous,
    )
    world.hgnc = build_hgnc_table(world, human_d, mouse_d, h_row, stream_rng(seed, "hgnc"))
    world.unknown_symbols = _unknown_symbols(p.n_unknown_symbols, world, stream_rng(seed, "unknown"))
    return world


def build_promoters(p: WorldParams, seed: int, models: dict[str, SpeciesModel],
                    networks: dict[str, pd.DataFrame], families: pd.DataFrame,
                    human_d, mouse_d, h_row, m_row) -> pd.DataFrame:
    """Promoter sequences with planted TF and family motifs; returns the motif table.

    Mouse promoters of homologous genes are the human promoter with
    ``promoter_divergence`` substitutions, then the mouse network's motifs are
    planted again (the mouse network differs by a few edges).
    """
    rng = stream_rng(seed, "promoters")
    length = p.promoter_length
    tf_motifs = draw_motifs(p.n_tfs, p.motif_length, rng)
    fam_motifs = draw_motifs(p.n_families + p.n_tfs, p.motif_length, rng)
    fam_motifs = [m for m in fam_motifs if m not in tf_motifs and reverse_complement(m) not in tf_motifs]
    fam_motifs = fam_motifs[: p.n_families]
    # sites cluster around the TSS (-300..+500), as real promoter elements do
    window = (max(0, p.promoter_upstream - 300), min(length, p.promoter_upstream + 500))

    human = models["human"]
    seqs_h = background_promoters(human.n_genes, length, p.promoter_gc, rng)
    mouse = models["mouse"]
    seqs_m = background_promoters(mouse.n_genes, length, p.promoter_gc, rng)
    # homologous mouse promoters derive from their human source gene
    src = np.array([h_row[g.human_source] if g.human_source >= 0 else -1 for g in mouse_d])
    mouse_rows_with_src = m_row[np.flatnonzero(src >= 0)]
    seqs_m[mouse_rows_with_src] = diverge(seqs_h[src[src >= 0]], p.promoter_divergence, rng)

    for model, seqs in ((human, seqs_h), (mouse, seqs_m)):
        occupied = np.zeros(seqs.shape, dtype=bool)
        edges = networks[model.species]
        plantings = [(int(r), tf_motifs[int(k)]) for k, r in zip(edges["tf_index"], edges["target_row"])]
        plant_motifs(seqs, plantings, p.motif_copies, p.motif_mutation, window, occupied, rng)
        fam_plantings = [(int(r), fam_motifs[f]) for f in range(p.n_families)
                         for r in np.flatnonzero(model.family_membership[f])]
        plant_motifs(seqs, fam_plantings, p.family_motif_copies, p.motif_mutation, window, occupied, rng)
        model.promoters = _decode(seqs)

    tf_symbols = human.genes["symbol"].to_numpy()[human.tf_gene_index]
    tf_ids = human.genes["ensembl_id"].to_numpy()[human.tf_gene_index]
    rows = [(f"{s}_motif", m, "tf", s, gid) for s, gid, m in zip(tf_symbols, tf_ids, tf_motifs)]
    rows += [(f"family{fid}_motif", m, "family", name, str(fid))
             for fid, name, m in zip(families["family_id"], families["name"], fam_motifs)]
    return pd.DataFrame(rows, columns=["motif", "consensus", "kind", "owner", "owner_id"])


_LOCUS = {
    "protein_coding": ("protein-coding gene", "gene with protein product"),
    "lncRNA": ("non-coding RNA", "RNA, long non-coding"),
    "miRNA": ("non-coding RNA", "RNA, micro"),
    "Mt_tRNA": ("non-coding RNA", "RNA, transfer"),
    "processed_pseudogene": ("pseudogene", "pseudogene"),
    "unprocessed_pseudogene": ("pseudogene", "pseudogene"),
    "snRNA": ("non-coding RNA", "RNA, small nuclear"),
    "misc_RNA": ("non-coding RNA", "RNA, misc"),
}

_NAME_SUFFIX = {
    "lncRNA": "long non-coding RNA", "miRNA": "microRNA",
    "processed_pseudogene": "pseudogene", "unprocessed_pseudogene": "pseudogene",
    "snRNA": "small nuclear RNA pseudogene", "misc_RNA": "signal recognition particle RNA pseudogene",
}


def build_hgnc_table(world: World, human_d, mouse_d, h_row, rng: np.random.Generator) -> pd.DataFrame:
    """HGNC complete-set layout for human genes (the ambiguous duplicate locus
    has no HGNC entry, as alternative loci do not)."""
    fam = world.families
    mgi = rng.choice(np.arange(1_000_000, 7_000_000), len(mouse_d), replace=False)
    hgnc_ids = rng.choice(np.arange(1, 60000), len(human_d), replace=False)
    rows = []
    seen_symbols = set()
    for i, g in enumerate(human_d):
        if g.symbol in seen_symbols:  # the duplicate locus of the ambiguous symbol
            continue
        seen_symbols.add(g.symbol)
        group = "|".join(fam["name"].iloc[f] for f in g.family_ids)
        group_id = "|".join(str(fam["family_id"].iloc[f]) for f in g.family_ids)
        if g.family_ids:
            name = f"{fam['name'].iloc[g.family_ids[0]].lower()} member {g.symbol}"
        elif g.biotype == "protein_coding":
            name = f"{g.symbol.lower()} protein"
        elif g.biotype == "Mt_tRNA":
            name = f"mitochondrially encoded tRNA {g.symbol[-1]}"
        else:
            name = f"{g.symbol.lower()} {_NAME_SUFFIX[g.biotype]}"
        locus_group, locus_type = _LOCUS[g.biotype]
        rows.append({
            "hgnc_id": f"HGNC:{hgnc_ids[i]}", "symbol": g.symbol, "name": name,
            "locus_group": locus_group, "locus_type": locus_type, "status": "Approved",
            "gene_group": group, "gene_group_id": group_id, "ensembl_gene_id": g.ensembl_id,
            "mgd_id": "|".join(f"MGI:{mgi[m]}" for m in g.partners),
            "_row": h_row[i],
        })
    table = pd.DataFrame(rows).sort_values("symbol", kind="stable")
    return table.drop(columns="_row").reset_index(drop=True)


def _unknown_symbols(n: int, world: World, rng: np.random.Generator) -> list[str]:
    known = set(world.human.genes["symbol"].str.upper())
    out: list[str] = []
    while len(out) < n:
        symbol = f"LOC{rng.integers(100000, 729999)}"
        if symbol not in known and symbol not in out:
            out.append(symbol)
    return out


# ---------------------------------------------------------------------------
# Cells
# ---------------------------------------------------------------------------


def _expected_detected(mu_shares: np.ndarray, library: np.ndarray, phi: float) -> np.ndarray:
    """Expected number of genes with count > 0 (negative binomial or Poisson)."""
    mu = mu_shares * library[:, None]
    if phi > 0:
        p_zero = (1.0 + mu * phi) ** (-1.0 / phi)
    else:
        p_zero = np.exp(-mu)
    return (1.0 - p_zero).sum(axis=1)


def library_for_detection(shares: np.ndarray, target: np.ndarray, phi: float) -> np.ndarray:
    """Library size (non-MT UMIs) whose expected detected-gene count equals ``target``."""
    lo = np.zeros(len(target))
    hi = np.full(len(target), 18.0)  # log library bounds: 1 .. 6.6e7
    for _ in range(45):
        mid = (lo + hi) / 2
        too_few = _expected_detected(shares, np.exp(mid), phi) < target
        lo = np.where(too_few, mid, lo)
        hi = np.where(too_few, hi, mid)
    return np.exp((lo + hi) / 2)


def draw_counts(rng: np.random.Generator, shares: np.ndarray, library: np.ndarray, phi: float) -> np.ndarray:
    mu = shares * library[:, None]
    if phi > 0:
        mu = mu * rng.gamma(1.0 / phi, phi, size=mu.shape)
    return rng.poisson(mu)


def draw_mito_counts(rng: np.random.Generator, nonmito_total: np.ndarray, fraction: np.ndarray,
                     mito_weights: np.ndarray) -> np.ndarray:
    """MT counts so that MT / (MT + non-MT) equals ``fraction`` (up to rounding)."""
    totals = np.round(fraction / (1.0 - fraction) * nonmito_total).astype(int)
    return np.stack([rng.multinomial(t, mito_weights) for t in totals]) if len(totals) else \
        np.zeros((0, len(mito_weights)), dtype=int)


def _barcodes(seed: int, n_total: int) -> list[str]:
    rng = stream_rng(seed, "barcodes")
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n_total:
        bc = "".join("ACGT"[i] for i in rng.integers(0, 4, 16)) + "-1"
        if bc not in seen:
            seen.add(bc)
            out.append(bc)
    return out


@dataclass
class SampleCounts:
    layout: SampleLayout
    counts: sp.csr_matrix  # cells x genes of the species gene table, int32
    obs: pd.DataFrame  # index barcode; cell_type, donor, batch, planted_quality
    tf_activity: np.ndarray  # (cells, n_tfs) effective activities used


def draw_cell_shares(world: World, species: str, activity: np.ndarray, rng: np.random.Generator,
                     batch_log_effect: np.ndarray | None = None, knockdown=()) -> np.ndarray:
    """Per-cell expression shares of non-MT genes (MT columns are 0).

    Adds the cell-level noise to :meth:`World.log_rates`: one shared factor per
    gene family and cell (planted co-expression) and a gene-wise sample effect.
    """
    p = world.params
    model = world.species_model(species)
    logr = world.log_rates(activity, species, knockdown=knockdown)
    family_factor = rng.normal(0, p.family_sd, (len(logr), p.n_families))
    logr += family_factor @ model.family_membership.astype(float)
    if batch_log_effect is not None:
        logr += batch_log_effect[None, :]
    return softmax_rows(logr)


def draw_cell_counts(world: World, species: str, shares: np.ndarray, quality: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """Integer counts (cells x genes) with planted quality classes.

    ``quality`` holds ``ok``, ``low_genes`` or ``high_mito`` per cell. Library
    sizes are solved so the expected number of detected genes hits a target
    drawn uniformly from the class's range; MT genes then get the class's
    mitochondrial fraction. A cell whose draw lands near its class bounds is
    redrawn (rare; it keeps the planted bounds exact for any seed).
    """
    p = world.params
    model = world.species_model(species)
    n = len(quality)
    low = quality == "low_genes"
    target = np.where(low, rng.uniform(*p.low_detected_genes, n), rng.uniform(*p.ok_detected_genes, n))
    library = library_for_detection(shares, target, p.nb_dispersion)
    mito_frac = np.where(quality == "high_mito", rng.uniform(*p.high_mito_fraction, n),
                         rng.uniform(*p.ok_mito_fraction, n))

    accept_lo = np.array([PLANTED_BOUNDS[q]["n_genes"][0] + 10 for q in quality])
    accept_hi = np.array([PLANTED_BOUNDS[q]["n_genes"][1] - 10 for q in quality])
    counts = np.zeros((n, model.n_genes), dtype=np.int64)
    todo = np.arange(n)
    for _round in range(100):
        if not len(todo):
            break
        block = draw_counts(rng, shares[todo], library[todo], p.nb_dispersion)
        block[:, model.is_mito] = draw_mito_counts(
            rng, block.sum(axis=1), mito_frac[todo], model.mito_weights[model.is_mito])
        counts[todo] = block
        detected = (block > 0).sum(axis=1)
        todo = todo[(detected < accept_lo[todo]) | (detected > accept_hi[todo])]
    if len(todo):
        raise RuntimeError(f"could not plant gene counts for {len(todo)} cells")
    return counts


def assign_cells(p: WorldParams, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cell-type indices (fixed uneven proportions, shuffled per sample) and
    planted quality labels (exact counts, random cells)."""
    props = np.array([0.28, 0.24, 0.2, 0.16, 0.12, 0.1, 0.08, 0.06])[: p.n_cell_types]
    type_counts = _split_count(n, rng.permutation(props))
    type_idx = rng.permutation(np.repeat(np.arange(p.n_cell_types), type_counts))
    n_low = round(p.frac_low_genes * n)
    n_mito = round(p.frac_high_mito * n)
    quality = rng.permutation(np.array(["low_genes"] * n_low + ["high_mito"] * n_mito
                                       + ["ok"] * (n - n_low - n_mito), dtype=object))
    return type_idx, quality


def simulate_sample(world: World, layout: SampleLayout, barcodes: list[str]) -> SampleCounts:
    """Simulate one sample's cells (deterministic in world.seed and layout.name)."""
    p = world.params
    model = world.species_model(layout.species)
    rng = stream_rng(world.seed, f"sample_{layout.name}")
    n = len(barcodes)
    type_idx, quality = assign_cells(p, n, rng)
    inputs = world.programs[type_idx] * np.exp(rng.normal(0, p.activity_jitter, (n, p.n_tfs)))
    activity = world.tf_activity(inputs, layout.species)
    batch_log_effect = rng.normal(0, p.batch_sd, model.n_genes)  # gene-wise sample effect
    shares = draw_cell_shares(world, layout.species, activity, rng, batch_log_effect)
    try:
        counts = draw_cell_counts(world, layout.species, shares, quality, rng)
    except RuntimeError as err:
        raise RuntimeError(f"{layout.name}: {err}") from None

    obs = pd.DataFrame({
        "cell_type": pd.Categorical(np.array(world.cell_types)[type_idx], categories=world.cell_types),
        "donor": pd.Categorical([layout.donor] * n),
        "batch": pd.Categorical([layout.name] * n),
        "planted_quality": pd.Categorical(quality, categories=["ok", "low_genes", "high_mito"]),
    }, index=pd.Index(barcodes, name="barcode"))
    result = SampleCounts(layout, sp.csr_matrix(counts.astype(np.int32)), obs, activity)
    check_planted_quality(result, model)
    return result


def planted_qc_keep(counts: sp.csr_matrix, biotypes: np.ndarray, is_mito: np.ndarray) -> np.ndarray:
    """The published QC cascade on one sample; returns the mask of kept cells."""
    counts = sp.csr_matrix(counts)
    expressed = counts > 0
    n_genes = np.asarray(expressed.sum(axis=1)).ravel()
    coding = np.isin(biotypes, ("protein_coding", "miRNA"))
    n_coding = np.asarray(expressed[:, coding].sum(axis=1)).ravel()
    total = np.asarray(counts.sum(axis=1)).ravel()
    mito = np.asarray(counts[:, is_mito].sum(axis=1)).ravel() / np.maximum(total, 1)
    keep = n_genes >= QC_MIN_GENES
    keep &= n_coding > QC_MIN_CODING_GENES
    keep &= mito <= QC_MAX_MITO
    mean, sd = n_genes[keep].mean(), n_genes[keep].std()
    keep &= np.abs(n_genes - mean) <= QC_MAX_SD * sd
    return keep


def check_planted_quality(sample: SampleCounts, model: SpeciesModel) -> None:
    """Raise if a planted quality class violates its bounds or QC would not recover it."""
    counts = sample.counts
    n_genes = np.asarray((counts > 0).sum(axis=1)).ravel()
    total = np.asarray(counts.sum(axis=1)).ravel()
    mito = np.asarray(counts[:, model.is_mito].sum(axis=1)).ravel() / np.maximum(total, 1)
    quality = sample.obs["planted_quality"].to_numpy()
    for q, limits in PLANTED_BOUNDS.items():
        sel = quality == q
        for name, values in (("n_genes", n_genes), ("mito_fraction", mito)):
            if name in limits:
                lo, hi = limits[name]
                bad = int(((values[sel] < lo) | (values[sel] > hi)).sum())
                if bad:
                    raise RuntimeError(
                        f"{sample.layout.name}: {bad} '{q}' cells outside {name} {limits[name]}")
    ok = quality == "ok"
    z = (n_genes[ok] - n_genes[ok].mean()) / n_genes[ok].std()
    if np.abs(z).max() > OK_MAX_ABS_Z:
        raise RuntimeError(f"{sample.layout.name}: an ok cell lies {np.abs(z).max():.2f} SD from the mean")
    keep = planted_qc_keep(counts, model.genes["biotype"].to_numpy(), model.is_mito)
    if not np.array_equal(keep, ok):
        raise RuntimeError(f"{sample.layout.name}: QC would not recover the planted ok cells")


# ---------------------------------------------------------------------------
# Deterministic writers
# ---------------------------------------------------------------------------


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)


def _write_tsv(path: Path, table: pd.DataFrame) -> None:
    _write_text(path, table.to_csv(sep="\t", index=False, lineterminator="\n"))


def _write_gzip(path: Path, data: bytes) -> None:
    # mtime=0 and an empty name keep the gzip header free of timestamps/paths
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(data)


def write_h5ad(path: Path, adata: ad.AnnData) -> None:
    """Uncompressed h5ad via anndata's own writer. It writes through h5py, whose
    groups and datasets do not record timestamps by default, and every input here
    is ordered, so the bytes depend on the data only (the tests hash them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(path)


def write_10x_h5(path: Path, counts: sp.csr_matrix, barcodes, ids, names, genome: str) -> None:
    """Cell Ranger v3 feature-barcode matrix: CSC of genes x cells (= CSR of cells x genes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    csr = sp.csr_matrix(counts)
    csr.sort_indices()
    n_cells, n_genes = csr.shape
    with h5py.File(path, "w", track_times=False) as fh:
        fh.attrs["filetype"] = "matrix"
        fh.attrs["version"] = np.int64(2)
        m = fh.create_group("matrix")
        m.create_dataset("barcodes", data=np.array(barcodes, dtype="S"))
        m.create_dataset("data", data=csr.data.astype(np.int32), compression="gzip", compression_opts=4)
        m.create_dataset("indices", data=csr.indices.astype(np.int64), compression="gzip", compression_opts=4)
        m.create_dataset("indptr", data=csr.indptr.astype(np.int64))
        m.create_dataset("shape", data=np.array([n_genes, n_cells], dtype=np.int32))
        f = m.create_group("features")
        f.create_dataset("_all_tag_keys", data=np.array([b"genome"]))
        f.create_dataset("feature_type", data=np.array([b"Gene Expression"] * n_genes))
        f.create_dataset("genome", data=np.array([genome.encode()] * n_genes))
        f.create_dataset("id", data=np.array(ids, dtype="S"))
        f.create_dataset("name", data=np.array(names, dtype="S"))


def write_10x_mtx(folder: Path, counts: sp.csr_matrix, barcodes, ids, names) -> None:
    """Cell Ranger v3 mtx folder: matrix.mtx.gz (genes x cells), features, barcodes."""
    folder.mkdir(parents=True, exist_ok=True)
    coo = sp.csr_matrix(counts).tocoo()  # cells x genes
    order = np.lexsort((coo.col, coo.row))  # by cell, then gene, as Cell Ranger writes
    gene, cell, value = coo.col[order] + 1, coo.row[order] + 1, coo.data[order]
    n_cells, n_genes = counts.shape
    lines = [
        "%%MatrixMarket matrix coordinate integer general",
        '%metadata_json: {"format_version": 2, "software_version": "genecompass-simulate"}',
        f"{n_genes} {n_cells} {len(value)}",
    ]
    body = "\n".join(f"{g} {c} {v}" for g, c, v in zip(gene.tolist(), cell.tolist(), value.tolist()))
    _write_gzip(folder / "matrix.mtx.gz", ("\n".join(lines) + "\n" + body + "\n").encode())
    features = "".join(f"{i}\t{n}\tGene Expression\n" for i, n in zip(ids, names))
    _write_gzip(folder / "features.tsv.gz", features.encode())
    _write_gzip(folder / "barcodes.tsv.gz", "".join(f"{b}\n" for b in barcodes).encode())


def write_fasta(path: Path, genes: pd.DataFrame, sequences: list[str], width: int = 60) -> None:
    parts = []
    for gid, symbol, seq in zip(genes["ensembl_id"], genes["symbol"], sequences):
        parts.append(f">{gid} {symbol}\n")
        parts.extend(seq[i:i + width] + "\n" for i in range(0, len(seq), width))
    _write_text(path, "".join(parts))


ORTHOLOG_HEADER = ('Gene stable ID,Gene name,Mouse gene name,Mouse gene stable ID,Mouse homology type,'
                   '"Mouse orthology confidence [0 low, 1 high]",Mouse Gene-order conservation score')


def write_orthologs(path: Path, orthologs: pd.DataFrame) -> None:
    def fmt(v):
        return "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(int(v))
    lines = [ORTHOLOG_HEADER]
    for r in orthologs.itertuples(index=False):
        lines.append(",".join([r.human_id, r.human_symbol, r.mouse_symbol, r.mouse_id,
                               r.homology_type, fmt(r.confidence), fmt(r.goc_score)]))
    _write_text(path, "\n".join(lines) + "\n")


def _write_sample(outdir: Path, world: World, sample: SampleCounts) -> None:
    layout = sample.layout
    model = world.species_model(layout.species)
    genes = model.genes
    path = outdir / layout.path
    barcodes = sample.obs.index.tolist()
    if layout.fmt == "h5ad":
        counts = sample.counts
        if layout.ids == "ensembl":
            var_names = genes["ensembl_id"].tolist()
        elif layout.ids == "ensembl_versioned":
            var_names = [f"{g}.{v}" for g, v in zip(genes["ensembl_id"], model.versions)]
        elif layout.ids == "symbol":
            counts, var_names = _symbol_keyed(world, sample)
        else:
            raise ValueError(f"unknown id style {layout.ids!r} for h5ad")
        adata = ad.AnnData(X=sp.csr_matrix(counts, dtype=np.int32), obs=sample.obs.copy(),
                           var=pd.DataFrame(index=pd.Index(var_names)))
        write_h5ad(path, adata)
    elif layout.fmt == "10x_h5":
        write_10x_h5(path, sample.counts, barcodes, genes["ensembl_id"].tolist(), genes["symbol"].tolist(),
                     genome="GRCh38" if layout.species == "human" else "GRCm39")
    elif layout.fmt == "10x_mtx":
        write_10x_mtx(path, sample.counts, barcodes, genes["ensembl_id"].tolist(), genes["symbol"].tolist())
    else:
        raise ValueError(f"unknown format {layout.fmt!r}")


def _symbol_keyed(world: World, sample: SampleCounts) -> tuple[sp.csr_matrix, list[str]]:
    """Symbol-keyed matrix as a typical processed h5ad: unique symbols sorted
    alphabetically (the ambiguous symbol's two loci summed into one column),
    plus a few LOC symbols that no gene table knows, with sparse counts."""
    genes = world.human.genes
    symbols = genes["symbol"].to_numpy()
    unique_symbols, inverse = np.unique(symbols, return_inverse=True)
    collapse = sp.csr_matrix((np.ones(len(symbols)), (np.arange(len(symbols)), inverse)),
                             shape=(len(symbols), len(unique_symbols)))
    counts = (sample.counts @ collapse).astype(np.int32)
    rng = stream_rng(world.seed, f"unknown_counts_{sample.layout.name}")
    n = counts.shape[0]
    extra = rng.poisson(0.15, (n, len(world.unknown_symbols))).astype(np.int32)
    all_counts = sp.hstack([counts, sp.csr_matrix(extra)], format="csr")
    all_symbols = np.concatenate([unique_symbols, world.unknown_symbols])
    order = np.argsort(all_symbols, kind="stable")
    return sp.csr_matrix(all_counts[:, order]), all_symbols[order].tolist()


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


def simulate_world(outdir, seed: int, params: dict | None = None) -> dict[str, str]:
    """Write the synthetic world under ``outdir``; returns logical name -> path.

    Files (paths relative to ``outdir``):

    - ``references/``: human/mouse gene tables, BioMart ortholog CSV, TRRUST-like
      GRNs, HGNC gene groups, promoter FASTAs;
    - ``counts/``: five samples in h5ad, 10x h5 and 10x mtx layouts;
    - ``truth/``: cell labels, cell-type programmes, motifs, co-expression
      modules, network effects, sample sheet and the parameters used.
    """
    world = build_world(seed, params)
    p = world.params
    out = Path(outdir)
    files: dict[str, Path] = {}

    ref = out / "references"
    for species in ("human", "mouse"):
        model = world.species_model(species)
        files[f"{species}_genes"] = ref / f"{species}_genes.tsv"
        _write_tsv(files[f"{species}_genes"], model.genes[["ensembl_id", "symbol", "biotype"]])
        files[f"grn_{species}"] = ref / f"grn_{species}.tsv"
        net = world.networks[species].sort_values(["source", "target"], kind="stable")
        _write_tsv(files[f"grn_{species}"], net[["source", "target", "mode"]])
        files[f"promoters_{species}"] = ref / f"promoters_{species}.fa"
        write_fasta(files[f"promoters_{species}"], model.genes, model.promoters)
    files["orthologs"] = ref / "orthologs_biomart.csv"
    write_orthologs(files["orthologs"], world.orthologs)
    files["gene_groups"] = ref / "hgnc_gene_groups.tsv"
    _write_tsv(files["gene_groups"], world.hgnc)

    barcodes = _barcodes(seed, p.cells_per_sample * len(SAMPLE_LAYOUTS))
    cell_rows, sheet_rows = [], []
    for k, layout in enumerate(SAMPLE_LAYOUTS):
        sample = simulate_sample(world, layout, barcodes[k * p.cells_per_sample:(k + 1) * p.cells_per_sample])
        _write_sample(out, world, sample)
        files[layout.name] = out / layout.path
        obs = sample.obs
        cell_rows.append(pd.DataFrame({
            "sample": layout.name, "barcode": obs.index.to_numpy(),
            "cell_type": obs["cell_type"].astype(str).to_numpy(),
            "planted_quality": obs["planted_quality"].astype(str).to_numpy(),
            "species": layout.species, "donor": layout.donor,
        }))
        sheet_rows.append({"sample": layout.name, "species": layout.species, "path": layout.path,
                           "format": layout.fmt,
                           "genome": "GRCh38" if layout.fmt == "10x_h5" else "",
                           "id_style": layout.ids, "donor": layout.donor})

    truth = out / "truth"
    files["truth_cells"] = truth / "cells.tsv"
    _write_tsv(files["truth_cells"], pd.concat(cell_rows, ignore_index=True))
    files["truth_samples"] = truth / "samples.tsv"
    _write_tsv(files["truth_samples"], pd.DataFrame(sheet_rows))
    files["truth_cell_types"] = truth / "cell_types.tsv"
    _write_tsv(files["truth_cell_types"], cell_type_table(world))
    files["truth_motifs"] = truth / "motifs.tsv"
    _write_tsv(files["truth_motifs"], world.motifs)
    files["truth_coexpression_modules"] = truth / "coexpression_modules.tsv"
    _write_tsv(files["truth_coexpression_modules"], coexpression_module_table(world))
    files["truth_network_effects"] = truth / "network_effects.tsv"
    _write_tsv(files["truth_network_effects"], pd.concat(
        [world.networks[s].assign(species=s)[["species", "source", "target", "mode", "weight",
                                               "source_ensembl_id", "target_ensembl_id"]]
         for s in ("human", "mouse")], ignore_index=True))
    files["truth_tfs"] = truth / "tfs.tsv"
    _write_tsv(files["truth_tfs"], world.tfs)
    files["truth_params"] = truth / "params.json"
    _write_text(files["truth_params"], json.dumps(
        {"seed": int(seed), "params": dataclasses.asdict(p)}, indent=2, sort_keys=True) + "\n")
    return {name: str(path) for name, path in files.items()}


def cell_type_table(world: World) -> pd.DataFrame:
    """Per cell type and species: each TF with non-zero mean activity, its role
    (driver: programme input 1; shared: input 0.5; downstream: via the network)."""
    rows = []
    for species in ("human", "mouse"):
        col = f"{species}_symbol"
        for t, name in enumerate(world.cell_types):
            inputs = world.programs[t]
            act = world.tf_activity(inputs, species)
            for k in np.flatnonzero(act > 0.05):
                role = "driver" if inputs[k] >= 1 else "shared" if inputs[k] > 0 else "downstream"
                rows.append({"cell_type": name, "species": species, "tf": world.tfs[col].iloc[k],
                             "ensembl_id": world.tfs[f"{species}_ensembl_id"].iloc[k],
                             "role": role, "activity": round(float(act[k]), 4)})
    return pd.DataFrame(rows)


def coexpression_module_table(world: World) -> pd.DataFrame:
    """Planted co-expression modules: members of each gene family share a per-cell factor."""
    rows = []
    for species in ("human", "mouse"):
        model = world.species_model(species)
        for f, (fid, name) in enumerate(zip(world.families["family_id"], world.families["name"])):
            for r in np.flatnonzero(model.family_membership[f]):
                rows.append({"module": f"family{fid}", "kind": "family", "name": name, "species": species,
                             "ensembl_id": model.genes["ensembl_id"].iloc[r],
                             "symbol": model.genes["symbol"].iloc[r]})
    return pd.DataFrame(rows)


if __name__ == "__main__":  # pragma: no cover - convenience for manual runs
    import sys

    target = sys.argv[1] if len(sys.argv) > 1 else "demo_world"
    for key, value in simulate_world(target, int(sys.argv[2]) if len(sys.argv) > 2 else 0).items():
        print(f"{key}\t{os.path.relpath(value)}")
