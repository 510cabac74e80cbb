"""Rule annotate: single-species cell-type annotation of one dataset by one method."""

import torch

from genecompass.annotation.finetune import (
    BaselineSettings,
    FinetuneSettings,
    counts_for_tokens,
    finetune_classifier,
    load_tokenized,
    logistic_regression_baseline,
    obs_for_tokens,
    split_by_group,
)
from genecompass.annotation.metrics import plot_confusion
from genecompass.utils import atomic_output, logged_to, write_json

with logged_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    dataset_spec = snakemake.params.dataset
    task = snakemake.params.task
    method = snakemake.wildcards.method
    seed = snakemake.params.seed
    qc_paths = dict(zip(dataset_spec["samples"], snakemake.input.h5ad))
    cells = load_tokenized(list(snakemake.input.shards))
    obs = obs_for_tokens(cells, qc_paths)
    label_column = dataset_spec["label_column"]
    split = split_by_group(obs, dataset_spec["group_column"], dataset_spec["test_groups"],
                           dataset_spec.get("validation_groups"), task.get("validation_fraction", 0.1), seed,
                           label_column=label_column)
    labels = obs[label_column].astype(str).to_numpy()
    assignment = split.assignment.loc[obs.index].to_numpy()
    print(split.counts().to_string())
    if method == "logistic_regression":
        result = logistic_regression_baseline(counts_for_tokens(cells, qc_paths), labels, assignment,
                                              BaselineSettings(**{**task.get("baseline", {}), "seed": seed}))
    else:
        init = {"genecompass": "pretrained", "genecompass_no_pretraining": "random"}[method]
        settings = FinetuneSettings.from_config(task.get("finetune", {}), seed)
        result = finetune_classifier(cells, labels, assignment, snakemake.input.model, init=init, settings=settings)
    metrics = result.summary()
    metrics.update(dataset=snakemake.wildcards.dataset, split=split.to_dict())
    print({k: metrics["metrics"][k] for k in ("accuracy", "macro_f1", "n_cells")})
    write_json(metrics, snakemake.output.metrics)
    with atomic_output(snakemake.output.predictions) as tmp:
        result.prediction_frame(obs.index).to_csv(tmp, sep="\t", index=False)
    plot_confusion(result.metrics["confusion_matrix"], result.metrics["labels"], snakemake.output.figure,
                   title=f"{method}: {snakemake.wildcards.dataset} (test cells)")
