"""Rule qc_figure: the QC of every sample, one figure (the summary's QC panel, without pretraining)."""

from genecompass.summary import plot_qc_overview
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    plot_qc_overview(snakemake.input.qc, snakemake.output[0])
