"""Raw-count quality control with the GeneCompass paper's filters.

Filters run in a fixed order, each on the cells the previous ones kept
(paper, "Data collection and preprocessing"):

1. cells with fewer than ``min_genes`` expressed genes (any gene);
2. cells with at most ``min_coding_genes`` expressed protein-coding or miRNA genes;
3. cells whose mitochondrial count fraction exceeds ``max_mito_fraction``;
4. cells whose expressed-gene number lies beyond ``max_gene_sd`` standard
   deviations of the mean of the sample's remaining cells;
5. the sample itself when fewer than ``min_cells`` cells remain;

then only core genes (protein-coding, lncRNA, miRNA by default) are kept.
Mitochondrial fraction and gene numbers are computed on all genes, before
the core-gene filter, as the paper does.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import InputError
from .genes import CORE_BIOTYPES, is_mitochondrial


@dataclass(frozen=True)
class QCParams:
    min_genes: int = 200
    min_coding_genes: int = 7
    max_mito_fraction: float = 0.15
    max_gene_sd: float = 3.0
    min_cells: int = 4
    core_biotypes: tuple[str, ...] = CORE_BIOTYPES
    coding_biotypes: tuple[str, ...] = ("protein_coding", "miRNA")
    # Accept input that does not look like raw counts (normalised, logged).
    allow_non_raw: bool = False
    # What to do with a sample left with fewer than min_cells: "error" or "drop".
    small_sample: str = "error"

    @classmethod
    def from_dict(cls, values: dict | None) -> QCParams:
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown QC parameter(s) {unknown}; known: {sorted(known)}")
        for name in ("core_biotypes", "coding_biotypes"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)


@dataclass
class QCResult:
    adata: anndata.AnnData  # noqa: F821 - the filtered sample
    filters: pd.DataFrame  # filter, threshold, cells_removed, cells_remaining
    cell_metrics: pd.DataFrame  # n_genes, mito_fraction, kept: every input cell
    dropped: bool = False
    messages: list[str] = field(default_factory=list)


_INT32_MAX = int(np.iinfo(np.int32).max)


def check_raw_counts(X, path, allow_non_raw: bool = False) -> None:
    """Refuse matrices that are not raw counts (negative, fractional or logged).

    Only the stored non-zero values are inspected, so sparse input stays sparse.
    """
    values = X.data if sp.issparse(X) else np.asarray(X).ravel()
    if values.dtype.kind not in "biuf":  # complex, strings, objects
        raise InputError(path, "X", f"the matrix holds {values.dtype} values, not counts",
                         "provide raw integer counts (e.g. adata.raw or layers['counts'] of the file)")
    if values.size == 0:
        return
    if np.issubdtype(values.dtype, np.integer):
        negative = bool((values < 0).any())
        fractional = False
    else:
        if not np.isfinite(values).all():
            raise InputError(path, "X", "the count matrix contains NaN or infinite values",
                             "provide the raw UMI/read count matrix")
        negative = bool((values < 0).any())
        fractional = bool((values != np.round(values)).any())
    if negative:
        # Negative values are never counts: no override for them.
        raise InputError(path, "X", "the matrix has negative values, so it is not a count matrix",
                         "provide raw integer counts (e.g. adata.raw or layers['counts'] of the file)")
    if fractional and not allow_non_raw:
        top = float(values.max())
        looks_logged = top < 30
        kind = "log-normalised" if looks_logged else "normalised"
        raise InputError(
            path, "X",
            f"the matrix has non-integer values (max {top:.3g}); it looks {kind}, not raw counts",
            "provide raw integer counts (e.g. adata.raw or layers['counts']), "
            "or set qc.allow_non_raw: true in the config if you really mean it",
        )
    if not allow_non_raw and values.max() > _INT32_MAX:
        # QC stores counts as int32: a larger value would wrap around.
        raise InputError(
            path, "X", f"the matrix has values up to {float(values.max()):.3g}, beyond the int32 counts "
                       f"QC stores (at most {_INT32_MAX})",
            "provide raw counts per cell and gene, or set qc.allow_non_raw: true to keep the values as they are",
        )


def _sd_outliers(n_genes: np.ndarray, max_sd: float) -> np.ndarray:
    if n_genes.size < 2:
        return np.zeros(n_genes.size, dtype=bool)
    mean, sd = n_genes.mean(), n_genes.std()
    if sd == 0:
        return np.zeros(n_genes.size, dtype=bool)
    return np.abs(n_genes - mean) > max_sd * sd


def qc_filter(adata, params: QCParams, path: str = "<sample>") -> QCResult:
    """Apply the QC filters to one sample.

    ``adata`` must have Ensembl IDs as ``var_names`` and ``var['symbol']``,
    ``var['biotype']`` (see ``genes.harmonize_gene_ids``). Returns the filtered
    sample with raw integer counts (CSR int32) and the per-filter table.
    """
    X = adata.X
    X = X.tocsr() if sp.issparse(X) else sp.csr_matrix(np.asarray(X))
    check_raw_counts(X, path, params.allow_non_raw)
    if not params.allow_non_raw:
        X = X.astype(np.int32)

    biotype = adata.var["biotype"].astype(str).to_numpy()
    mito = is_mitochondrial(adata.var["symbol"].astype(str).to_numpy())
    coding = np.isin(biotype, params.coding_biotypes)

    expressed = X > 0
    n_genes = np.asarray(expressed.sum(axis=1)).ravel()
    n_coding = np.asarray(expressed[:, coding].sum(axis=1)).ravel()
    totals = np.asarray(X.sum(axis=1, dtype=np.float64)).ravel()
    mito_counts = np.asarray(X[:, mito].sum(axis=1, dtype=np.float64)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        mito_fraction = np.where(totals > 0, mito_counts / np.maximum(totals, 1e-12), 0.0)

    keep = np.ones(adata.n_obs, dtype=bool)
    rows = []

    def record(name, threshold, remove_mask):
        removed = int((keep & remove_mask).sum())
        keep[remove_mask] = False
        rows.append((name, threshold, removed, int(keep.sum())))

    rows.append(("input", "", 0, int(keep.sum())))
    record("min_genes", f"< {params.min_genes} expressed genes", n_genes < params.min_genes)
    record("min_coding_genes", f"<= {params.min_coding_genes} protein-coding/miRNA genes",
           n_coding <= params.min_coding_genes)
    record("max_mito_fraction", f"> {params.max_mito_fraction}", mito_fraction > params.max_mito_fraction)
    outlier = np.zeros(adata.n_obs, dtype=bool)
    outlier[keep] = _sd_outliers(n_genes[keep].astype(np.float64), params.max_gene_sd)
    record("gene_number_sd", f"beyond {params.max_gene_sd} SD of the mean", outlier)

    messages = []
    dropped = False
    if keep.sum() < params.min_cells:
        message = (f"{int(keep.sum())} cells remain after QC, fewer than qc.min_cells = {params.min_cells}")
        if params.small_sample == "error":
            raise InputError(
                path, "cells", message,
                "check that this is the sample you meant (see the per-filter table in the log), "
                "remove it from the sample sheet, or set qc.small_sample: drop",
            )
        record("min_cells", f"< {params.min_cells} cells in sample", np.ones(adata.n_obs, dtype=bool))
        dropped = True
        messages.append(f"sample dropped: {message}")
    else:
        rows.append(("min_cells", f"< {params.min_cells} cells in sample", 0, int(keep.sum())))

    core = np.isin(biotype, params.core_biotypes)
    import anndata

    # Built from the filtered matrix directly: copying the view would copy X twice.
    counts = X[keep][:, core].tocsr()
    counts.sort_indices()
    out = anndata.AnnData(X=counts, obs=adata.obs.iloc[np.flatnonzero(keep)].copy(),
                          var=adata.var.iloc[np.flatnonzero(core)].copy(), uns=dict(adata.uns))
    out.obs["n_genes"] = n_genes[keep].astype(np.int32)
    out.obs["n_counts"] = totals[keep]
    out.obs["mito_fraction"] = mito_fraction[keep]
    messages.append(f"kept {int(core.sum())} of {adata.n_vars} genes with core biotypes {list(params.core_biotypes)}")

    table = pd.DataFrame(rows, columns=["filter", "threshold", "cells_removed", "cells_remaining"])
    metrics = pd.DataFrame({"n_genes": n_genes, "mito_fraction": mito_fraction, "kept": keep},
                           index=adata.obs_names)
    out.uns["qc_params"] = {k: (list(v) if isinstance(v, tuple) else v)
                            for k, v in params.__dict__.items()}
    return QCResult(out, table, metrics, dropped, messages)


def plot_qc(cell_metrics: pd.DataFrame, params: QCParams, title: str, path) -> None:
    """Two panels: expressed genes and mitochondrial fraction, kept vs removed."""
    from genecompass.plotting import plt, save_figure

    kept = cell_metrics["kept"].to_numpy()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, column, threshold, label in (
        (axes[0], "n_genes", params.min_genes, "expressed genes per cell"),
        (axes[1], "mito_fraction", params.max_mito_fraction, "mitochondrial fraction"),
    ):
        values = cell_metrics[column].to_numpy(dtype=float)
        bins = np.histogram_bin_edges(values, bins=40)
        ax.hist(values[kept], bins=bins, color="tab:blue", alpha=0.8, label=f"kept ({kept.sum()})")
        ax.hist(values[~kept], bins=bins, color="tab:red", alpha=0.7, label=f"removed ({(~kept).sum()})")
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1)
        ax.set_xlabel(label)
        ax.set_ylabel("cells")
    axes[0].legend(frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def _with_count_source_hint(error: InputError, counts_path, fmt, counts, sample) -> InputError:
    """A not-raw-counts error, with the sample-sheet value that points at the file's raw counts."""
    from .io import count_sources_of

    if error.field != "X":
        return error
    sources = [s for s in count_sources_of(counts_path, fmt) if s != (counts or "X")]
    if not sources:
        return error
    where = "its .raw.X" if sources[0] == "raw" else f"its {sources[0]}"
    field = "X" if not counts or counts == "X" else f"counts={counts}"
    return InputError(counts_path, field, error.problem,
                      f"{where} holds integer counts: set the column counts of sample '{sample}' in the sample "
                      f"sheet to {sources[0]}")


def qc_sample(counts_path, fmt, genome, species, sample, gene_table_path, params: QCParams,
              out_h5ad, out_filters, out_gene_report, out_figure, hgnc_path=None, counts: str | None = None,
              gene_column: str | None = None) -> QCResult:
    """Read one sample, map its genes to Ensembl IDs, filter it, write the outputs.

    ``hgnc_path`` (the HGNC complete set, human samples): its Ensembl IDs settle
    symbols that the gene table lists under several IDs (alternate-haplotype
    copies), and its previous and alias symbols map renamed genes.
    ``counts`` / ``gene_column``: the sample sheet's columns (``io.read_counts``).
    """
    import logging

    from .genes import harmonize_gene_ids, read_gene_table
    from .io import read_counts
    from .references import hgnc_ensembl_ids, hgnc_symbol_routes
    from .utils import atomic_output, write_json

    log = logging.getLogger("genecompass.qc")
    adata = read_counts(counts_path, fmt, genome=genome, counts=counts, gene_column=gene_column)
    log.info("read %s: %d cells x %d genes", counts_path, adata.n_obs, adata.n_vars)
    preferred_ids = hgnc_ensembl_ids(hgnc_path) if hgnc_path else None
    symbol_routes = hgnc_symbol_routes(hgnc_path) if hgnc_path and species == "human" else None
    if adata.obs_names.duplicated().any():
        duplicates = adata.obs_names[adata.obs_names.duplicated()].unique()[:5].tolist()
        raise InputError(counts_path, "obs_names", f"duplicate cell barcodes, e.g. {duplicates}",
                         "make barcodes unique (e.g. adata.obs_names_make_unique()) before running")
    gene_table = read_gene_table(gene_table_path, species)
    adata, gene_report = harmonize_gene_ids(adata, gene_table, species, counts_path, preferred_ids=preferred_ids,
                                            symbol_routes=symbol_routes)
    log.info("gene identifiers: %s", {k: v for k, v in gene_report.items() if not isinstance(v, (list, dict))})
    log.info("UMIs lost with unmapped or ambiguous genes: %.2f%% (by route: %s)",
             100 * gene_report["umi_share_lost"],
             ", ".join(f"{route} {r['n_genes']} genes {100 * r['umi_share']:.2f}%"
                       for route, r in gene_report["routes"].items()))
    if gene_report.get("n_unmapped") or gene_report.get("n_ambiguous"):
        log.warning("%d unmapped and %d ambiguous gene identifiers dropped (listed in %s)",
                    gene_report.get("n_unmapped", 0), gene_report.get("n_ambiguous", 0), out_gene_report)

    try:
        result = qc_filter(adata, params, path=str(counts_path))
    except InputError as error:
        raise _with_count_source_hint(error, counts_path, fmt, counts, sample) from None
    for message in result.messages:
        log.info(message)
    log.info("per-filter counts:\n%s", result.filters.to_string(index=False))

    out = result.adata
    out.uns["species"] = species
    out.uns["sample"] = sample
    with atomic_output(out_h5ad) as tmp:
        out.write_h5ad(tmp)
    with atomic_output(out_filters) as tmp:
        result.filters.assign(sample=sample).to_csv(tmp, sep="\t", index=False)
    write_json(gene_report, out_gene_report)
    with atomic_output(out_figure) as tmp:
        plot_qc(result.cell_metrics, params, f"{sample} ({species})", tmp)
    return result


def summarize_filters(filter_tables, out_path) -> pd.DataFrame:
    """Stack per-sample filter tables into one wide table: a row per sample."""
    from .utils import atomic_output

    rows = []
    for path in filter_tables:
        table = pd.read_csv(path, sep="\t")
        row = {"sample": table["sample"].iloc[0]}
        row["cells_input"] = int(table.loc[table["filter"] == "input", "cells_remaining"].iloc[0])
        for name, removed in zip(table["filter"], table["cells_removed"]):
            if name != "input":
                row[f"removed_{name}"] = int(removed)
        row["cells_kept"] = int(table["cells_remaining"].iloc[-1])
        rows.append(row)
    summary = pd.DataFrame(rows)
    with atomic_output(out_path) as tmp:
        summary.to_csv(tmp, sep="\t", index=False)
    return summary
