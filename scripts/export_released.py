"""Rule export_released: one variant (model.layout released) as a released GeneCompass folder."""

from genecompass.released import export_release
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    export_release(snakemake.input.model, snakemake.input.dictionary, snakemake.input.medians, snakemake.params.folder)
