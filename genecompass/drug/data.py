"""Drug-response inputs: L1000 GCT/GCTX plates, drug SMILES tables, and CPA-style
single-cell dose-response AnnData, each checked with errors that name the field.

Every loader returns one AnnData layout (samples x genes, ``var.gene_symbol``)
with the columns the tasks read: ``obs.drug`` (the control label for vehicle
samples), ``obs.dose`` (float, µM or the data's own unit; 0 for controls),
``obs.control`` (bool) and the covariates named in the config.
"""

from __future__ import annotations

import io
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from genecompass.errors import InputError

CONTROL = "control"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


# ---------------------------------------------------------------- GCT / GCTX


def read_gct(path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(values genes x samples, row metadata, column metadata) of a GCT 1.2/1.3 text file or a GCTX (HDF5).

    The file's content decides, not its suffix: some archives ship text GCT under a .gctx name.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "path", "no such file", "check the dataset's data entry in the config")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head == HDF5_SIGNATURE:
        return _read_gctx(path)
    if not head.startswith(b"#1."):
        raise InputError(path, "header", f"starts with {head!r}, not a GCT version line (#1.2 / #1.3) "
                         "or an HDF5 signature", "give an L1000 .gct or .gctx file")
    lines = path.read_text().splitlines()
    version = lines[0].strip()
    try:
        dims = [int(x) for x in lines[1].split("\t")]
    except ValueError:
        raise InputError(path, "dimensions", f"line 2 {lines[1][:60]!r} is not tab-separated integers",
                         "the second line of a GCT holds the row and column counts") from None
    if version == "#1.2":
        n_rows, n_cols, n_rmeta, n_cmeta = dims[0], dims[1], 1, 0
    elif version == "#1.3" and len(dims) == 4:
        n_rows, n_cols, n_rmeta, n_cmeta = dims
    else:
        raise InputError(path, "version", f"unsupported GCT header {version!r} {dims}", "use GCT 1.2 or 1.3")
    header = lines[2].split("\t")
    if len(header) != 1 + n_rmeta + n_cols:
        raise InputError(path, "header", f"{len(header)} columns, expected 1 + {n_rmeta} row-metadata fields "
                         f"+ {n_cols} samples", "the dimension line and the header disagree; re-export the file")
    sample_ids = header[1 + n_rmeta:]
    col_meta = pd.DataFrame({"id": sample_ids})
    for line in lines[3:3 + n_cmeta]:
        fields = line.split("\t")
        col_meta[fields[0]] = fields[1 + n_rmeta:]
    body = pd.read_csv(io.StringIO("\n".join(lines[3 + n_cmeta:])), sep="\t", header=None, dtype=str)
    if body.shape != (n_rows, 1 + n_rmeta + n_cols):
        raise InputError(path, "data", f"{body.shape[0]} data rows of {body.shape[1]} fields, expected "
                         f"{n_rows} of {1 + n_rmeta + n_cols}", "the file is truncated or malformed")
    row_meta = body.iloc[:, : 1 + n_rmeta].set_axis(header[: 1 + n_rmeta], axis=1).rename(columns={header[0]: "id"})
    try:
        values = body.iloc[:, 1 + n_rmeta:].astype(float).to_numpy()
    except ValueError as error:
        raise InputError(path, "data", f"non-numeric expression value ({error})", "fix or drop those cells") from None
    return (pd.DataFrame(values, index=row_meta["id"].to_numpy(), columns=sample_ids),
            row_meta.reset_index(drop=True), _numeric_meta(col_meta))


def _read_gctx(path: Path):
    import h5py

    def strings(dataset):
        return [v.decode() if isinstance(v, bytes) else str(v) for v in dataset[()]]

    with h5py.File(path, "r") as handle:
        try:
            matrix = handle["0/DATA/0/matrix"][()]
            row_ids, col_ids = strings(handle["0/META/ROW/id"]), strings(handle["0/META/COL/id"])
            row_meta = pd.DataFrame({"id": row_ids, **{k: strings(v) for k, v in handle["0/META/ROW"].items()
                                                       if k != "id"}})
            col_meta = pd.DataFrame({"id": col_ids, **{k: strings(v) for k, v in handle["0/META/COL"].items()
                                                       if k != "id"}})
        except KeyError as error:
            raise InputError(path, str(error), "the GCTX lacks the 0/DATA/0/matrix or 0/META groups",
                             "give an L1000 GCTX file as cmapPy writes it") from None
    # GCTX stores the matrix samples x genes.
    values = pd.DataFrame(matrix.T.astype(float), index=row_ids, columns=col_ids)
    return values, row_meta, _numeric_meta(col_meta)


def _numeric_meta(meta: pd.DataFrame) -> pd.DataFrame:
    for column in meta.columns:
        if column != "id":
            converted = pd.to_numeric(meta[column], errors="coerce")
            if converted.notna().all():
                meta[column] = converted
    return meta


# ---------------------------------------------------------------- SMILES


def read_smiles_table(path) -> dict[str, str]:
    """Drug id -> SMILES from a two-column CSV (DeepCE's layout; a header row is allowed)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "path", "no such file", "check the dataset's smiles entry in the config")
    table = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
    if table.shape[1] < 2:
        raise InputError(path, "columns", f"{table.shape[1]} column(s); expected drug id and SMILES",
                         "write one 'id,SMILES' line per drug")
    if str(table.iloc[0, 1]).strip().lower() in ("smiles", "canonical_smiles"):
        table = table.iloc[1:]
    duplicated = table[0][table[0].duplicated()].unique()
    if len(duplicated):
        raise InputError(path, "id", f"drug ids listed twice: {list(duplicated[:5])}", "keep one SMILES per drug")
    return dict(zip(table[0].str.strip(), table[1].str.strip()))


# ---------------------------------------------------------------- dose-response data sets


def plate_to_anndata(path, drug_field: str = "pert_id", name_field: str = "pert_iname",
                     cell_field: str = "cell_id", control_types=("ctl_vehicle",),
                     treatment_types=("trt_cp",)) -> ad.AnnData:
    """An L1000 plate as samples x landmark genes (``var.gene_symbol``), vehicle wells as controls.

    Wells of other perturbation types (positive controls, ``trt_poscon``) are left out.
    """
    values, row_meta, col_meta = read_gct(path)
    for field in (drug_field, cell_field, "pert_type", "pert_dose"):
        if field not in col_meta.columns:
            raise InputError(path, field, "missing column-metadata field",
                             f"an L1000 plate needs {drug_field}, {cell_field}, pert_type and pert_dose")
    symbol_field = "pr_gene_symbol" if "pr_gene_symbol" in row_meta.columns else None
    if symbol_field is None:
        raise InputError(path, "pr_gene_symbol", "missing row-metadata field", "use a plate with gene symbols")
    if "pr_is_lmark" in row_meta.columns:
        landmark = row_meta["pr_is_lmark"].astype(str).isin(["1", "Y", "True", "true"]).to_numpy()
        values, row_meta = values[landmark], row_meta[landmark]
    kinds = col_meta["pert_type"].astype(str)
    keep = kinds.isin([*control_types, *treatment_types]).to_numpy()
    col_meta = col_meta[keep].reset_index(drop=True)
    control = col_meta["pert_type"].isin(control_types).to_numpy()
    obs = pd.DataFrame({
        "drug": np.where(control, CONTROL, col_meta[drug_field].astype(str)),
        "drug_name": np.where(control, CONTROL, col_meta.get(name_field, col_meta[drug_field]).astype(str)),
        "dose": np.where(control, 0.0, pd.to_numeric(col_meta["pert_dose"], errors="coerce")),
        "control": control,
        cell_field: col_meta[cell_field].astype(str).to_numpy(),
    }, index=col_meta["id"].astype(str).to_numpy())
    bad = ~control & ~(obs["dose"].to_numpy() > 0)
    if bad.any():
        raise InputError(path, "pert_dose", f"{int(bad.sum())} treated well(s) without a positive dose "
                         f"(e.g. {obs.index[bad][0]})", "drop those wells or fill their dose")
    var = pd.DataFrame({"gene_symbol": row_meta[symbol_field].astype(str).to_numpy()},
                       index=row_meta["id"].astype(str).to_numpy())
    adata = ad.AnnData(values[col_meta["id"]].to_numpy(np.float32).T, obs=obs, var=var)
    adata.uns["source"] = {"path": str(path), "dropped_wells": int((~keep).sum())}
    return adata


def load_dose_response(entry: dict, path) -> ad.AnnData:
    """A dataset of a drug task as the common layout (see the module docstring).

    ``entry`` is the config entry: ``format`` ``h5ad`` (CPA's layout; ``drug_key``,
    ``dose_key``, ``control_value`` name its obs fields) or ``l1000`` (a GCT/GCTX plate),
    and ``covariate_keys``.
    """
    fmt = entry.get("format", "h5ad")
    covariates = list(entry.get("covariate_keys") or [])
    if fmt == "l1000":
        adata = plate_to_anndata(path, cell_field=covariates[0] if covariates else "cell_id")
        if not covariates:
            covariates = ["cell_id"]
    elif fmt == "h5ad":
        adata = _load_h5ad(path, entry, covariates)
    else:
        raise InputError(path, "format", f"unknown dataset format {fmt!r}", "use 'h5ad' or 'l1000'")
    for key in covariates:
        if key not in adata.obs.columns:
            raise InputError(path, f"obs.{key}", "covariate column missing",
                             f"name existing obs columns in covariate_keys ({list(adata.obs.columns)})")
        adata.obs[key] = adata.obs[key].astype(str)
    if adata.obs["control"].sum() == 0:
        raise InputError(path, "control", "no control (vehicle) samples",
                         "CPA and the baselines need controls; check control_value / pert_type")
    adata.uns["covariate_keys"] = covariates
    return adata


def _load_h5ad(path, entry: dict, covariates: list[str]) -> ad.AnnData:
    import scipy.sparse as sp

    path = Path(path)
    if not path.exists():
        raise InputError(path, "path", "no such file", "check the dataset's data entry in the config")
    adata = ad.read_h5ad(path)
    drug_key, dose_key = entry.get("drug_key", "condition"), entry.get("dose_key", "dose_val")
    control_value = str(entry.get("control_value", CONTROL))
    symbol_key = entry.get("gene_symbol_key", "gene_symbol")
    for key in (drug_key, dose_key):
        if key not in adata.obs.columns:
            raise InputError(path, f"obs.{key}", "column missing",
                             f"set drug_key / dose_key to obs columns ({list(adata.obs.columns)})")
    if symbol_key not in adata.var.columns:
        raise InputError(path, f"var.{symbol_key}", "gene-symbol column missing",
                         "set gene_symbol_key to the var column holding gene symbols")
    drug = adata.obs[drug_key].astype(str).to_numpy()
    control = drug == control_value
    dose = pd.to_numeric(adata.obs[dose_key], errors="coerce").to_numpy(float)
    bad = ~control & ~(dose > 0)
    if bad.any():
        raise InputError(path, f"obs.{dose_key}", f"{int(bad.sum())} treated cell(s) without a positive dose",
                         "doses must be positive numbers for treated cells")
    X = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    if np.nanmin(X) < 0:
        raise InputError(path, "X", "negative expression values", "X must be log-normalised counts (log1p CP10k)")
    obs = pd.DataFrame({"drug": np.where(control, CONTROL, drug), "drug_name": np.where(control, CONTROL, drug),
                        "dose": np.where(control, 0.0, dose), "control": control}, index=adata.obs_names)
    for key in covariates:
        if key in adata.obs.columns:
            obs[key] = adata.obs[key].astype(str).to_numpy()
    var = pd.DataFrame({"gene_symbol": adata.var[symbol_key].astype(str).to_numpy()}, index=adata.var_names)
    return ad.AnnData(X.astype(np.float32), obs=obs, var=var)


def condition_key(obs: pd.DataFrame, covariates: list[str]) -> pd.Series:
    """A readable key per sample: 'cov|drug|dose'."""
    parts = [obs[c].astype(str) for c in covariates] + [obs["drug"].astype(str), obs["dose"].map(lambda d: f"{d:g}")]
    key = parts[0]
    for part in parts[1:]:
        key = key + "|" + part
    return key
