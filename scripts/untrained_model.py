"""Rule untrained_model: the main variant's architecture and knowledge, seeded initial weights."""

from genecompass.pretrain import save_untrained_model
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    save_untrained_model(snakemake.params.model_section, snakemake.params.variant, snakemake.input.dictionary,
                         snakemake.input.knowledge, snakemake.params.seed, snakemake.output.model)
