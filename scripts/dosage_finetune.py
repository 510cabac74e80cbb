"""Rule dosage_finetune: gene-stratified cross-validation of the dosage-sensitivity token classifier,
from the pretrained model (genecompass) or the same architecture without pretraining."""

from genecompass.tasks.dosage.run import finetune_folds
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    finetune_folds(snakemake.params.base_method, snakemake.params.task, snakemake.params.seed, snakemake.input.model,
                   snakemake.input.dictionary, snakemake.input.labels, snakemake.input.shards,
                   snakemake.output.folds, snakemake.output.predictions)
