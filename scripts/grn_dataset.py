"""Rule grn_dataset: one GRN dataset as a BEELINE folder (expression, TFs, ground-truth networks)."""

from genecompass.tasks.grn.run import export_dataset
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    export_dataset(snakemake.params.dataset, snakemake.input.get("h5ad"), snakemake.input.get("expression"),
                   snakemake.input.get("tfs"), snakemake.output[0])
