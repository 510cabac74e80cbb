"""Readers of single-cell count matrices: h5ad, 10x Genomics h5 and mtx folders.

The published readers (anndata, scanpy) do the parsing; this module picks the
format, checks what they cannot, and turns their failures into
:class:`genecompass.errors.InputError` that names the file and the fix.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import anndata
import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp
from anndata import AnnData

from genecompass.errors import InputError
from genecompass.sample_sheet import FORMATS

_FORMAT_FIX = (f"set the `format` column of the sample sheet to one of {', '.join(FORMATS)} "
               "(h5ad file, 10x .h5 file, or a 10x folder with matrix.mtx[.gz], "
               "features.tsv[.gz] or genes.tsv, barcodes.tsv[.gz])")
_CORRUPT_FIX = ("re-download or re-export the file (it may be truncated or not the format "
                "named in the sample sheet)")
_GENOME_FIX = "set the `genome` column for this sample in the sample sheet"

# Errors the published readers raise on a damaged or mislabelled file.
_READER_ERRORS = (OSError, KeyError, ValueError, TypeError, IndexError, EOFError,
                  UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError)


def detect_format(path: str | os.PathLike) -> str:
    """Guess the format from the path: `.h5ad`, `.h5`/`.hdf5` or a directory."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "path", "file or folder not found",
                         "check the `path` column of the sample sheet (relative paths are "
                         "resolved from the working directory)")
    if path.is_dir():
        return "10x_mtx"
    name = path.name.lower()
    if name.endswith(".h5ad"):
        return "h5ad"
    if name.endswith((".h5", ".hdf5")):
        return "10x_h5"
    raise InputError(path, "format", f"cannot tell the format from the name {path.name!r}",
                     _FORMAT_FIX)


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == ""


COUNT_SOURCES = "X (the default), raw (the file's .raw.X) or layers/<name>"


def read_counts(path: str | os.PathLike, fmt: str | None = None, genome: str | None = None,
                counts: str | None = None, gene_column: str | None = None) -> AnnData:
    """Read a count matrix as AnnData (cells x genes, X as CSR).

    `fmt` is one of FORMATS or None (detected from the path). `genome` picks one
    genome of a multi-genome 10x file (or a genome subfolder of a Cell Ranger 2
    mtx folder). Gene identifiers stay as found; 10x files give symbols as
    `var_names` (duplicates kept) and Ensembl IDs in `var["gene_ids"]`.
    `counts` (h5ad only): where the raw counts are, one of COUNT_SOURCES
    (CELLxGENE and most scanpy users keep log-normalised values in X and the
    counts in .raw.X or a layer). `gene_column`: a `var` column whose values
    become the gene identifiers (e.g. CELLxGENE's `feature_name` symbols
    beside Ensembl IDs in the index).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "path", "file or folder not found",
                         "check the `path` column of the sample sheet")
    fmt = None if _blank(fmt) else str(fmt).strip()
    genome = None if _blank(genome) else str(genome).strip()
    counts = "X" if _blank(counts) else str(counts).strip()
    if fmt is None:
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise InputError(path, "format", f"unknown format {fmt!r}", _FORMAT_FIX)
    if counts != "X" and fmt != "h5ad":
        raise InputError(path, "counts", f"'{counts}' names a part of an h5ad file, but the sample's format is {fmt}",
                         "leave the sample sheet's counts column empty (or X) for 10x files")

    if fmt == "h5ad":
        adata = select_counts(_read_h5ad(path), counts, path)
    elif fmt == "10x_h5":
        adata = _read_10x_h5(path, genome)
    else:
        adata = _read_10x_mtx(path, genome)
    if not _blank(gene_column):
        adata = _genes_from_column(adata, str(gene_column).strip(), path)
    return _with_csr(adata, path)


def select_counts(adata: AnnData, counts: str, path: Path | None = None) -> AnnData:
    """``adata`` with the matrix named by ``counts`` (one of COUNT_SOURCES) as X."""
    if counts == "X":
        return adata
    if counts == "raw":
        if adata.raw is None:
            raise InputError(path, "counts", "is 'raw' but the file has no .raw",
                             f"set the sample sheet's counts column to one of {integer_count_sources(adata) or ['X']}")
        var = adata.raw.var.copy()
        for column in adata.var.columns:   # .raw.var often lacks the columns of var (symbols)
            if column not in var.columns and adata.var.index.is_unique:
                var[column] = adata.var[column].reindex(var.index).to_numpy()
        return AnnData(X=adata.raw.X, obs=adata.obs, var=var, uns=adata.uns)
    if counts.startswith("layers/"):
        name = counts[len("layers/"):]
        if name not in adata.layers:
            raise InputError(path, "counts", f"the file has no layer '{name}' (it has {list(adata.layers)})",
                             f"set the sample sheet's counts column to one of {COUNT_SOURCES}")
        return AnnData(X=adata.layers[name], obs=adata.obs, var=adata.var, uns=adata.uns)
    raise InputError(path, "counts", f"unknown value {counts!r}", f"use {COUNT_SOURCES}")


def integer_count_sources(adata: AnnData) -> list[str]:
    """The sample-sheet `counts` values under which ``adata`` holds non-negative integer matrices."""
    def integers(matrix) -> bool:
        values = matrix.data if sp.issparse(matrix) else np.asarray(matrix).ravel()
        if values.dtype.kind not in "biuf" or values.size == 0:
            return False
        sample = values[:1_000_000]
        return bool((sample >= 0).all() and (sample == np.round(sample)).all())

    sources = ["X"] if adata.X is not None and integers(adata.X) else []
    if adata.raw is not None and integers(adata.raw.X):
        sources.append("raw")
    sources += [f"layers/{name}" for name, layer in adata.layers.items() if integers(layer)]
    return sources


def count_sources_of(path: str | os.PathLike, fmt: str | None = None) -> list[str]:
    """``integer_count_sources`` of an h5ad file (other formats hold counts in X only: [])."""
    path = Path(path)
    fmt = detect_format(path) if _blank(fmt) else str(fmt).strip()
    return integer_count_sources(_read_h5ad(path)) if fmt == "h5ad" else []


def _genes_from_column(adata: AnnData, column: str, path: Path) -> AnnData:
    if column not in adata.var.columns:
        raise InputError(path, "gene_column", f"'{column}' is not a var column (it has {list(adata.var.columns)})",
                         "set the sample sheet's gene_column to one of those, or leave it empty to use var_names")
    values = adata.var[column].astype(str).str.strip().to_numpy()
    # The chosen column replaces var_names and an Ensembl `gene_ids` column, which would win otherwise.
    var = adata.var.drop(columns=[c for c in (column, "gene_ids") if c in adata.var.columns])
    var.index = pd.Index(values, dtype=object)
    return AnnData(X=adata.X, obs=adata.obs, var=var, uns=adata.uns)


def _with_csr(adata: AnnData, path: Path) -> AnnData:
    if adata.X is None:
        raise InputError(path, "X", "the file has no count matrix X",
                         "store the raw counts in X")
    if not isinstance(adata.X, sp.csr_matrix):
        if not (sp.issparse(adata.X) or isinstance(adata.X, np.ndarray)):
            raise InputError(path, "X", f"unsupported matrix type {type(adata.X).__name__}",
                             "store X as a dense array or a scipy sparse matrix")
        X = adata.X
        if X.dtype == np.float16:  # scipy.sparse has no float16; float32 holds every float16 exactly
            X = X.astype(np.float32)
        try:
            adata.X = sp.csr_matrix(X)
        except (ValueError, TypeError) as exc:
            raise InputError(path, "X", f"cannot use the matrix of dtype {X.dtype} ({exc})",
                             "store the raw counts in X as integers") from None
    return adata


def _check_path_kind(path: Path, want_dir: bool, fmt: str) -> None:
    if want_dir and not path.is_dir():
        raise InputError(path, "format", f"format {fmt} needs a folder, but this is a file",
                         _FORMAT_FIX)
    if not want_dir and path.is_dir():
        raise InputError(path, "format", f"format {fmt} needs a file, but this is a folder",
                         _FORMAT_FIX)


def _read_h5ad(path: Path) -> AnnData:
    _check_path_kind(path, False, "h5ad")
    if _looks_like_10x_h5(path):
        raise InputError(path, "format", "this is a 10x h5 file, not an h5ad file",
                         "set the `format` column of this sample to 10x_h5")
    try:
        with warnings.catch_warnings():
            # Duplicated gene names are expected: harmonisation sums them.
            warnings.filterwarnings("ignore", message=".*not unique.*")
            return anndata.read_h5ad(path)
    except InputError:
        raise
    except _READER_ERRORS as exc:
        raise InputError(path, "path", f"cannot read as h5ad ({type(exc).__name__}: {exc})",
                         _CORRUPT_FIX) from None


def _looks_like_10x_h5(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as handle:
            return "matrix" in handle or any(
                isinstance(item, h5py.Group) and "genes" in item and "data" in item
                for item in handle.values())
    except _READER_ERRORS:
        return False


# ---------------------------------------------------------------- 10x h5


def _h5_genomes(path: Path) -> tuple[str, list[str]]:
    """Layout ("v3" or "legacy") and the genomes a 10x h5 file holds."""
    try:
        with h5py.File(path, "r") as handle:
            if "matrix" in handle:
                features = handle["matrix"].get("features")
                if features is None or "id" not in features:
                    raise InputError(path, "path", "10x h5 file has /matrix but no /matrix/features/id",
                                     _CORRUPT_FIX)
                if "genome" in features:
                    genomes = pd.unique(np.asarray(features["genome"][:]).astype(str)).tolist()
                else:
                    genomes = []
                return "v3", genomes
            # Cell Ranger 1-2: one group per genome holding the matrix datasets.
            genomes = [name for name, item in handle.items()
                       if isinstance(item, h5py.Group) and "genes" in item and "data" in item]
    except InputError:
        raise
    except _READER_ERRORS as exc:
        raise InputError(path, "path", f"cannot open as HDF5 ({type(exc).__name__}: {exc})",
                         _CORRUPT_FIX) from None
    if not genomes:
        raise InputError(path, "format",
                         "not a 10x h5 file: neither /matrix (Cell Ranger 3+) nor genome groups "
                         "(Cell Ranger 1-2) found",
                         f"if this is an AnnData file name it .h5ad or set format h5ad; {_FORMAT_FIX}")
    return "legacy", genomes


def _read_10x_h5(path: Path, genome: str | None) -> AnnData:
    import scanpy as sc

    _check_path_kind(path, False, "10x_h5")
    layout, genomes = _h5_genomes(path)
    if genome is not None and layout == "v3" and not genomes:
        raise InputError(path, "genome", f"genome {genome!r} requested but the file records no genomes",
                         "leave the `genome` column of this sample empty")
    if genome is None and len(genomes) > 1:
        raise InputError(path, "genome", f"the file holds several genomes: {genomes}", _GENOME_FIX)
    if genome is not None and genomes and genome not in genomes:
        raise InputError(path, "genome", f"genome {genome!r} not in the file; available: {genomes}",
                         _GENOME_FIX)
    try:
        # scanpy filters a v3 file's features to `genome`, and picks the group of a legacy file.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not unique.*")
            adata = sc.read_10x_h5(path, genome=genome)
    except InputError:
        raise
    except _READER_ERRORS as exc:
        raise InputError(path, "path", f"cannot read as 10x h5 ({type(exc).__name__}: {exc})",
                         _CORRUPT_FIX) from None
    return adata


# ---------------------------------------------------------------- 10x mtx


def _first_existing(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _mtx_files(folder: Path) -> dict[str, Path | None]:
    return {
        "matrix": _first_existing(folder, ("matrix.mtx.gz", "matrix.mtx")),
        "features": _first_existing(folder, ("features.tsv.gz", "features.tsv", "genes.tsv", "genes.tsv.gz")),
        "barcodes": _first_existing(folder, ("barcodes.tsv.gz", "barcodes.tsv")),
    }


def _mtx_folder(path: Path, genome: str | None) -> Path:
    """The folder holding the matrix: `path` itself or its genome subfolder (Cell Ranger 2)."""
    if _mtx_files(path)["matrix"] is not None:
        return path
    subfolders = sorted(p.name for p in path.iterdir()
                        if p.is_dir() and _mtx_files(p)["matrix"] is not None)
    if genome is not None:
        if genome in subfolders:
            return path / genome
        raise InputError(path, "genome", f"no genome subfolder {genome!r}; available: {subfolders}",
                         _GENOME_FIX)
    if len(subfolders) == 1:
        return path / subfolders[0]
    if len(subfolders) > 1:
        raise InputError(path, "genome", f"the folder holds several genomes: {subfolders}", _GENOME_FIX)
    raise InputError(path, "path", "no matrix.mtx or matrix.mtx.gz in the folder",
                     "point `path` at the 10x folder with matrix.mtx[.gz], features.tsv[.gz] "
                     "or genes.tsv, barcodes.tsv[.gz]")


def _read_10x_mtx(path: Path, genome: str | None) -> AnnData:
    import scanpy as sc

    _check_path_kind(path, True, "10x_mtx")
    folder = _mtx_folder(path, genome)
    files = _mtx_files(folder)
    missing = [kind for kind, file in files.items() if file is None]
    if missing:
        names = {"features": "features.tsv[.gz] or genes.tsv", "barcodes": "barcodes.tsv[.gz]"}
        raise InputError(folder, "path", f"missing {' and '.join(names[m] for m in missing)}",
                         "copy the complete Cell Ranger output folder")

    # scanpy knows two layouts: Cell Ranger 2 (all plain, genes.tsv) and 3+ (all gzip,
    # features.tsv.gz); other mixes of compression are read directly.
    names = {kind: file.name for kind, file in files.items()}
    standard = (names == {"matrix": "matrix.mtx", "features": "genes.tsv", "barcodes": "barcodes.tsv"}
                or names == {"matrix": "matrix.mtx.gz", "features": "features.tsv.gz",
                             "barcodes": "barcodes.tsv.gz"})
    try:
        if standard:
            # make_unique=False: duplicated symbols stay duplicated so that
            # harmonisation can sum them once they are mapped to Ensembl IDs.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*not unique.*")
                adata = sc.read_10x_mtx(folder, var_names="gene_symbols", make_unique=False)
        else:
            adata = _read_mtx_files(files)
    except InputError:
        raise
    except _READER_ERRORS as exc:
        raise InputError(folder, "path", f"cannot read the 10x mtx folder ({type(exc).__name__}: {exc})",
                         _CORRUPT_FIX) from None
    return adata


def _read_mtx_files(files: dict[str, Path]) -> AnnData:
    """Read a 10x mtx folder whose files mix plain and gzip (scanpy expects all one way)."""
    # float32 like scanpy's readers, so every mtx folder gives the same dtype.
    counts = sp.csr_matrix(scipy.io.mmread(files["matrix"]).T, dtype=np.float32)
    features = pd.read_csv(files["features"], sep="\t", header=None, dtype=str)
    barcodes = pd.read_csv(files["barcodes"], sep="\t", header=None, dtype=str)
    if counts.shape != (len(barcodes), len(features)):
        raise ValueError(f"matrix shape {counts.shape[::-1]} (genes x cells) does not match "
                         f"{len(features)} features and {len(barcodes)} barcodes")
    symbols = features[1] if features.shape[1] > 1 else features[0]
    var = pd.DataFrame({"gene_ids": features[0].to_numpy(dtype=object)},
                       index=pd.Index(symbols.to_numpy(dtype=object)))
    if features.shape[1] > 2:
        var["feature_types"] = features[2].to_numpy(dtype=object)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not unique.*")
        adata = AnnData(X=counts, obs=pd.DataFrame(index=barcodes[0].to_numpy(dtype=object)), var=var)
        if "feature_types" in var.columns:
            adata = adata[:, (var["feature_types"] == "Gene Expression").to_numpy()].copy()
    return adata
