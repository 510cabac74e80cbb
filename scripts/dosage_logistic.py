"""Rule dosage_logistic: logistic regression on the static knowledge embeddings, same gene folds."""

from genecompass.dictionary import read_dictionary
from genecompass.insilico.dosage import (
    DosageSettings,
    cross_validate_logistic,
    knowledge_features,
)
from genecompass.insilico.gene_sets import gene_token_lookup, read_dosage_labels
from genecompass.utils import atomic_output, logged_to, settings_from_config

with logged_to(snakemake.log[0]):
    task = snakemake.params.task
    settings = settings_from_config(DosageSettings, task.get("finetune"), "tasks.dosage.finetune",
                                    seed=snakemake.params.seed)
    lookup = gene_token_lookup(read_dictionary(snakemake.input.dictionary), task.get("species", "human"))
    labels = read_dosage_labels(snakemake.input.labels, lookup)
    features = knowledge_features(snakemake.input.knowledge, labels.index.to_numpy())
    folds, predictions = cross_validate_logistic(features, labels, settings.n_folds, settings.seed)
    print(folds.round(4).to_string())
    with atomic_output(snakemake.output.folds) as tmp:
        folds.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    with atomic_output(snakemake.output.predictions) as tmp:
        predictions.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
