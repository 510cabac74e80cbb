"""Drug experiments in the demo world: a sci-Plex-like single-cell dose-response
screen (for CPA) and an L1000-like plate of bulk profiles (for DeepCE).

Drugs are real compounds (``demo_drugs.tsv``: sci-Plex 3 names and SMILES).
What a drug does follows from its structure, so a model that reads molecules
can predict drugs it has never seen: a few Morgan-fingerprint bits are planted
as *pharmacophores*, each pushing the input activity of one TF up or down; a
drug's push is the sum over the pharmacophores it carries, plus a small
private part no structure explains. The push is scaled by the drug's Hill
dose-response ``h(d) = d^n / (d^n + EC50^n)`` and travels down the world's TF
hierarchy (:meth:`World.tf_activity`), so the expression of a responding gene
traces a sigmoid in log dose: the shape CPA's dose-response function is meant
to learn.

The single-cell screen is written as an AnnData in CPA's layout (obs
``condition``, ``dose_val``, ``cell_type``, ``control``; log1p CP10k in X,
counts in a layer) with the noise-free truth on a dose grid beside it. The
plate is written as a GCT 1.3 file in the layout of a real L1000 level-3 plate
(log2 expression of landmark genes, wells with ``pert_id``, ``pert_iname``,
``pert_type``, ``pert_dose``, ``cell_id``), so one reader serves the demo and
the real plate.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from genecompass.drug.data import CONTROL
from genecompass.drug.molecules import morgan_fingerprints
from genecompass.simulate.world import World, build_world, draw_counts, softmax_rows, stream_rng
from genecompass.utils import settings_from_config

VEHICLE = "DMSO"


@dataclass(frozen=True)
class DrugScreenParams:
    # Single-cell screen, shaped like sci-Plex 2 (A549 x 4 drugs x 7 doses; here three cell types
    # stand in for cell lines). The drugs are analogues of sci-Plex 2's: an MDM2 antagonist
    # (Nutlin-3a), a glucocorticoid (dexamethasone), an HDAC inhibitor (SAHA), a kinase inhibitor.
    sc_drugs: tuple[str, ...] = ("JNJ-26854165", "Triamcinolone", "Panobinostat", "Tofacitinib")
    sc_cell_types: tuple[str, ...] = ("epithelial_like", "immune_like", "stromal_like")
    sc_doses: tuple[float, ...] = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)   # µM
    cells_per_condition: int = 30
    control_cells: int = 150            # vehicle cells per cell type
    library_log_mean: float = 8.0       # ~3,000 UMIs per cell (sci-Plex is shallow)
    library_log_sd: float = 0.4
    activity_jitter: float = 0.15
    # L1000-like plate, shaped like LJP005 (one cell line, ~55 compounds x 6 doses, DMSO wells)
    plate_drugs: int = 48
    plate_cell_types: tuple[str, ...] = ("epithelial_like", "stromal_like")
    plate_doses: tuple[float, ...] = (0.04, 0.12, 0.37, 1.11, 3.33, 10.0)  # µM, LJP005's doses
    plate_controls: int = 16            # DMSO wells per cell line
    plate_noise_sd: float = 0.2         # log2 measurement noise per well and gene
    plate_jitter: float = 0.03          # a well averages many cells: little programme noise
    n_landmarks: int = 978
    gene_vector_dims: int = 64          # the demo's DeepCE gene features (DeepCE's own: 128)
    # Mechanism
    n_pharmacophores: int = 24
    pharmacophore_frequency: tuple[float, float] = (0.08, 0.5)   # share of drugs carrying the bit
    pharmacophore_effect: tuple[float, float] = (0.8, 1.6)       # |TF input push| of one bit
    private_effect: float = 0.4          # sd of the structure-free push on two random TFs
    log10_ec50: tuple[float, float] = (-1.5, 0.5)                # µM
    hill: tuple[float, float] = (1.0, 2.5)
    grid_points: int = 25                # noise-free truth on this many log-spaced doses

    @classmethod
    def from_overrides(cls, params: dict | None) -> DrugScreenParams:
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in (params or {}).items()}
        return settings_from_config(cls, values, "simulate.drug_screen")


def demo_drug_table() -> pd.DataFrame:
    """The embedded real compounds: drug, smiles, pathway."""
    import io

    lines = resources.files("genecompass.simulate").joinpath("demo_drugs.tsv").read_text().splitlines()
    # Header comments start the file; '#' inside a SMILES is a triple bond, so no comment= here.
    body = "\n".join(line for line in lines if not line.startswith("#"))
    return pd.read_csv(io.StringIO(body), sep="\t")


@dataclass
class Mechanism:
    """What each drug does: a TF input push at full response, and its Hill curve."""

    drugs: list[str]
    push: np.ndarray            # drugs x TFs
    ec50: np.ndarray            # µM
    hill: np.ndarray
    pharmacophores: pd.DataFrame  # bit, tf_index, effect

    def response(self, drug: str, dose: float | np.ndarray) -> np.ndarray:
        i = self.drugs.index(drug)
        dose = np.asarray(dose, float)
        return dose ** self.hill[i] / (dose ** self.hill[i] + self.ec50[i] ** self.hill[i])

    def inputs(self, programme: np.ndarray, drug: str, dose: float) -> np.ndarray:
        if drug == CONTROL:
            return programme
        return programme + self.response(drug, dose) * self.push[self.drugs.index(drug)]


def plant_mechanism(world: World, table: pd.DataFrame, p: DrugScreenParams, seed: int) -> Mechanism:
    rng = stream_rng(seed, "drug_mechanism")
    drugs = table["drug"].tolist()
    bits = morgan_fingerprints(table["smiles"].tolist(), names=drugs)
    share = bits.mean(axis=0)
    lo, hi = p.pharmacophore_frequency
    candidates = np.flatnonzero((share >= lo) & (share <= hi))
    if len(candidates) < p.n_pharmacophores:
        raise ValueError(f"only {len(candidates)} fingerprint bits are carried by {lo:.0%}-{hi:.0%} of the "
                         f"drugs; lower n_pharmacophores ({p.n_pharmacophores})")
    chosen = rng.choice(candidates, p.n_pharmacophores, replace=False)
    n_tfs = world.params.n_tfs
    tf_of_bit = rng.integers(0, n_tfs, len(chosen))
    effect = rng.uniform(*p.pharmacophore_effect, len(chosen)) * rng.choice([-1.0, 1.0], len(chosen))
    push = np.zeros((len(drugs), n_tfs))
    for k, bit in enumerate(chosen):
        carriers = bits[:, bit] > 0
        push[carriers, tf_of_bit[k]] += effect[k]
    # Several pharmacophores share one drug's potency rather than adding up without bound.
    push /= np.sqrt(np.maximum(1.0, (bits[:, chosen] > 0).sum(axis=1)))[:, None]
    for i in range(len(drugs)):
        push[i, rng.choice(n_tfs, 2, replace=False)] += rng.normal(0, p.private_effect, 2)
    return Mechanism(drugs, push, 10 ** rng.uniform(*p.log10_ec50, len(drugs)), rng.uniform(*p.hill, len(drugs)),
                     pd.DataFrame({"bit": chosen, "tf_index": tf_of_bit, "effect": effect}))


def _dose_grid(doses, n: int) -> np.ndarray:
    grid = np.geomspace(min(doses), max(doses), n)
    return np.unique(np.concatenate([grid, np.asarray(doses, float)]))


def expected_log_expression(world: World, mechanism: Mechanism, cell_type: str, drug: str,
                            doses: np.ndarray) -> np.ndarray:
    """Noise-free log1p CP10k (doses x non-MT genes) of a cell type under a drug."""
    programme = world.program_inputs(cell_type)
    inputs = np.vstack([mechanism.inputs(programme, drug, d) for d in np.atleast_1d(doses)])
    share = softmax_rows(world.log_rates(world.tf_activity(inputs, "human"), "human"))
    return np.log1p(share[:, ~world.human.is_mito] * 1e4)


def simulate_single_cell(world: World, mechanism: Mechanism, p: DrugScreenParams, seed: int) -> ad.AnnData:
    model = world.human
    keep = ~model.is_mito
    blocks, obs = [], []
    for cell_type in p.sc_cell_types:
        programme = world.program_inputs(cell_type)
        conditions = [(CONTROL, 0.0, p.control_cells)] + [(d, x, p.cells_per_condition)
                                                          for d in p.sc_drugs for x in p.sc_doses]
        for drug, dose, n in conditions:
            rng = stream_rng(seed, f"drug_cells_{cell_type}_{drug}_{dose}")
            inputs = mechanism.inputs(programme, drug, dose)[None, :] * np.exp(
                rng.normal(0, p.activity_jitter, (n, len(programme))))
            logr = world.log_rates(world.tf_activity(inputs, "human"), "human")
            logr += rng.normal(0, world.params.family_sd, (n, world.params.n_families)) @ model.family_membership
            library = np.exp(rng.normal(p.library_log_mean, p.library_log_sd, n))
            blocks.append(draw_counts(rng, softmax_rows(logr), library, world.params.nb_dispersion)[:, keep])
            obs += [(drug, dose, cell_type)] * n
    counts = sp.csr_matrix(np.vstack(blocks).astype(np.float32))
    obs = pd.DataFrame(obs, columns=["condition", "dose_val", "cell_type"],
                       index=[f"cell{i:05d}" for i in range(len(obs))])
    obs["control"] = (obs["condition"] == CONTROL).astype(int)
    obs["cov_drug_dose_name"] = [f"{c}_{d}_{x:g}" for c, d, x in obs[["cell_type", "condition", "dose_val"]].to_numpy()]
    genes = model.genes.loc[keep, ["ensembl_id", "symbol"]]
    var = pd.DataFrame({"gene_symbol": genes["symbol"].to_numpy()},
                       index=pd.Index(genes["ensembl_id"].to_numpy(), name="gene_id"))
    adata = ad.AnnData(counts, obs=obs, var=var)
    adata.layers["counts"] = counts.copy()
    totals = np.asarray(counts.sum(axis=1)).ravel()
    adata.X = sp.csr_matrix(sp.diags(1e4 / np.maximum(totals, 1)) @ counts).log1p().astype(np.float32)
    return adata


def dose_response_truth(world: World, mechanism: Mechanism, p: DrugScreenParams, genes) -> pd.DataFrame:
    """Noise-free profiles on a log dose grid: rows (cell_type, drug, dose), columns gene ids."""
    grid = _dose_grid(p.sc_doses, p.grid_points)
    frames = []
    for cell_type in p.sc_cell_types:
        for drug in p.sc_drugs:
            values = expected_log_expression(world, mechanism, cell_type, drug, grid)
            index = pd.MultiIndex.from_arrays([[cell_type] * len(grid), [drug] * len(grid), grid],
                                              names=["cell_type", "drug", "dose"])
            frames.append(pd.DataFrame(values, index=index, columns=genes))
    return pd.concat(frames)


def simulate_plate(world: World, mechanism: Mechanism, drugs: list[str], p: DrugScreenParams,
                   seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """An L1000-like plate: (expression landmark genes x wells, row metadata, column metadata)."""
    model = world.human
    keep = np.flatnonzero(~model.is_mito)
    wells, columns = [], []
    for line in p.plate_cell_types:
        programme = world.program_inputs(line)
        layout = [(VEHICLE, 0.0)] * p.plate_controls + [(d, x) for d in drugs for x in p.plate_doses]
        for k, (drug, dose) in enumerate(layout):
            rng = stream_rng(seed, f"drug_plate_{line}_{k}")
            inputs = mechanism.inputs(programme, CONTROL if drug == VEHICLE else drug, dose)
            inputs = inputs * np.exp(rng.normal(0, p.plate_jitter, len(programme)))
            share = softmax_rows(world.log_rates(world.tf_activity(inputs, "human"), "human"))[0, keep]
            wells.append(np.log2(share * 1e6 + 1) + rng.normal(0, p.plate_noise_sd, len(keep)))
            columns.append({"id": f"DEMO_{line.upper()}_{k:03d}", "pert_id": drug, "pert_iname": drug,
                            "pert_type": "ctl_vehicle" if drug == VEHICLE else "trt_cp",
                            "pert_dose": -666 if drug == VEHICLE else dose,
                            "pert_dose_unit": -666 if drug == VEHICLE else "um",
                            "cell_id": line, "pert_time": 24})
    values = np.vstack(wells).T
    # Landmarks: the genes best measured on such a plate, i.e. the most expressed in the controls.
    control = np.array([c["pert_type"] == "ctl_vehicle" for c in columns])
    order = np.argsort(-values[:, control].mean(axis=1), kind="stable")[: p.n_landmarks]
    order = np.sort(order)
    symbols = model.genes["symbol"].to_numpy()[keep][order]
    row_meta = pd.DataFrame({"id": [f"{i}_at" for i in order], "pr_gene_symbol": symbols, "pr_is_lmark": "Y"})
    col_meta = pd.DataFrame(columns)
    return pd.DataFrame(values[order], index=row_meta["id"], columns=col_meta["id"]), row_meta, col_meta


def coexpression_gene_vectors(world: World, genes: list[str], n_dims: int, seed: int,
                              n_profiles: int = 2000) -> pd.DataFrame:
    """Gene2vec-like vectors for the demo's DeepCE: leading singular vectors of standardised log
    expression over jittered profiles of every cell type (co-expression, not the planted network)."""
    rng = stream_rng(seed, "drug_gene_vectors")
    model = world.human
    keep = ~model.is_mito
    programmes = world.programs[rng.integers(0, len(world.cell_types), n_profiles)]
    inputs = programmes * np.exp(rng.normal(0, 0.5, programmes.shape))
    logr = world.log_rates(world.tf_activity(inputs, "human"), "human")[:, keep]
    family_factors = rng.normal(0, world.params.family_sd, (n_profiles, world.params.n_families))
    logr += family_factors @ model.family_membership[:, keep]
    z = (logr - logr.mean(0)) / np.maximum(logr.std(0), 1e-9)
    u, singular, _ = np.linalg.svd(z.T, full_matrices=False)
    vectors = u[:, :n_dims] * singular[:n_dims] / np.sqrt(n_profiles)
    table = pd.DataFrame(vectors, index=model.genes["symbol"].to_numpy()[keep])
    table = table[~table.index.duplicated()]
    return table.loc[[g for g in genes if g in table.index]]


def write_gct(values: pd.DataFrame, row_meta: pd.DataFrame, col_meta: pd.DataFrame, path) -> None:
    """GCT 1.3: rows are genes with metadata columns, columns are samples with metadata rows."""
    from genecompass.utils import atomic_output

    row_fields = [c for c in row_meta.columns if c != "id"]
    col_fields = [c for c in col_meta.columns if c != "id"]
    with atomic_output(path) as tmp, open(tmp, "w") as handle:
        handle.write("#1.3\n")
        handle.write(f"{values.shape[0]}\t{values.shape[1]}\t{len(row_fields)}\t{len(col_fields)}\n")
        handle.write("\t".join(["id", *row_fields, *col_meta["id"].astype(str)]) + "\n")
        for field in col_fields:
            handle.write("\t".join([field, *["na"] * len(row_fields), *col_meta[field].astype(str)]) + "\n")
        for (_, meta), row in zip(row_meta.iterrows(), values.to_numpy()):
            handle.write("\t".join([str(meta["id"]), *[str(meta[f]) for f in row_fields],
                                    *[f"{v:.4f}" for v in row]]) + "\n")


def write_drug_screen(outdir, seed: int, world_params: dict | None = None, params: dict | None = None) -> dict:
    """Write ``sciplex_demo.h5ad``, ``dose_response_truth.tsv.gz``, ``l1000_demo.gct``,
    ``drugs_smiles.csv`` (DeepCE's layout: id,SMILES without header), ``gene_vectors.csv`` (DeepCE's
    gene-feature layout: symbol,v1..vd) and ``mechanism.tsv``."""
    from genecompass.utils import atomic_output

    p = DrugScreenParams.from_overrides(params)
    world = build_world(seed, world_params)
    table = demo_drug_table()
    missing = sorted(set(p.sc_drugs) - set(table["drug"]))
    if missing:
        raise ValueError(f"simulate.drug_screen.sc_drugs: {missing} are not in the demo drug table")
    rng = stream_rng(seed, "drug_plate_drugs")
    others = [d for d in table["drug"] if d not in p.sc_drugs]
    plate_drugs = sorted([*p.sc_drugs, *rng.choice(others, max(0, p.plate_drugs - len(p.sc_drugs)), replace=False)])
    mechanism = plant_mechanism(world, table, p, seed)

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"h5ad": out / "sciplex_demo.h5ad", "truth": out / "dose_response_truth.tsv.gz",
             "plate": out / "l1000_demo.gct", "smiles": out / "drugs_smiles.csv", "mechanism": out / "mechanism.tsv",
             "gene_vectors": out / "gene_vectors.csv"}
    adata = simulate_single_cell(world, mechanism, p, seed)
    with atomic_output(paths["h5ad"]) as tmp:
        adata.write_h5ad(tmp, compression="gzip")
    truth = dose_response_truth(world, mechanism, p, adata.var_names.to_numpy())
    with atomic_output(paths["truth"]) as tmp:
        truth.to_csv(tmp, sep="\t", float_format="%.5f", compression="gzip")
    values, row_meta, col_meta = simulate_plate(world, mechanism, plate_drugs, p, seed)
    write_gct(values, row_meta, col_meta, paths["plate"])
    vectors = coexpression_gene_vectors(world, list(row_meta["pr_gene_symbol"]), p.gene_vector_dims, seed)
    with atomic_output(paths["gene_vectors"]) as tmp:
        vectors.to_csv(tmp, header=False, float_format="%.6f")
    used = table[table["drug"].isin(plate_drugs)]
    with atomic_output(paths["smiles"]) as tmp:
        used[["drug", "smiles"]].to_csv(tmp, header=False, index=False)
    rows = pd.DataFrame({"drug": mechanism.drugs, "ec50_um": mechanism.ec50, "hill": mechanism.hill,
                         "in_single_cell": [d in p.sc_drugs for d in mechanism.drugs],
                         "on_plate": [d in plate_drugs for d in mechanism.drugs],
                         "push_norm": np.linalg.norm(mechanism.push, axis=1)})
    with atomic_output(paths["mechanism"]) as tmp:
        rows.to_csv(tmp, sep="\t", index=False)
    return {k: str(v) for k, v in paths.items()}
