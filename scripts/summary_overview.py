"""Rule summary_overview: QC of every sample and every variant's pretraining curves, one figure each."""

from genecompass.summary import plot_pretraining_overview, plot_qc_overview
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    plot_qc_overview(snakemake.input.qc, snakemake.output.qc)
    logs = dict(zip(snakemake.params.variants, snakemake.input.logs, strict=True))
    plot_pretraining_overview(logs, snakemake.output.pretraining)
