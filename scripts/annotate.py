"""Rule annotate: single-species cell-type annotation of one dataset by one method, over several seeds."""

from genecompass.tasks.annotation.run import annotate
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    annotate(snakemake.params.dataset, snakemake.params.task, snakemake.params.base_method, snakemake.params.seeds,
             snakemake.input.shards, snakemake.input.h5ad, snakemake.input.get("model"),
             snakemake.output.metrics, snakemake.output.predictions, snakemake.output.figure)
