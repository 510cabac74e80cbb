"""Rule import_released: the released checkpoint of model.source in our model, dictionary and median formats."""

import logging

from genecompass.released import import_release
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    report = import_release(
        snakemake.params.checkpoint, snakemake.input.token_dictionary,
        dict(zip(snakemake.params.median_species, snakemake.input.medians)),
        dict(zip(("human", "mouse"), snakemake.input.genes)),
        snakemake.output.model, snakemake.output.dictionary, snakemake.output.medians, snakemake.output.report)
    logging.getLogger("genecompass.released").info("imported: %s", report)
