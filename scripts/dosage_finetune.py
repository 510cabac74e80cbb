"""Rule dosage_finetune: gene-stratified cross-validation of the dosage-sensitivity token classifier,
from the pretrained model (genecompass) or the same architecture without pretraining."""

from genecompass.annotation.finetune import load_tokenized
from genecompass.devices import resolve_device
from genecompass.dictionary import read_dictionary
from genecompass.insilico.dosage import DosageSettings, cross_validate_finetuning
from genecompass.insilico.gene_sets import gene_token_lookup, read_dosage_labels
from genecompass.utils import atomic_output, logged_to, settings_from_config

INITS = {"genecompass": "pretrained", "genecompass_no_pretraining": "random"}

with logged_to(snakemake.log[0]):
    task = snakemake.params.task
    settings = settings_from_config(DosageSettings, task.get("finetune"), "tasks.dosage.finetune",
                                    seed=snakemake.params.seed)
    settings.device = str(resolve_device(settings.device))
    lookup = gene_token_lookup(read_dictionary(snakemake.input.dictionary), task.get("species", "human"))
    labels = read_dosage_labels(snakemake.input.labels, lookup)
    print(f"{len(labels)} labelled genes with a token: {int(labels.sum())} sensitive")
    folds, predictions = cross_validate_finetuning(load_tokenized(list(snakemake.input.shards)), labels,
                                                   snakemake.input.model, init=INITS[snakemake.wildcards.method],
                                                   settings=settings, progress=True)
    print(folds.round(4).to_string())
    with atomic_output(snakemake.output.folds) as tmp:
        folds.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    with atomic_output(snakemake.output.predictions) as tmp:
        predictions.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
