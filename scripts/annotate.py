"""Rule annotate: single-species cell-type annotation of one dataset by one method, over several seeds."""

from genecompass.annotation.finetune import (
    BaselineSettings,
    FinetuneSettings,
    combine_seed_runs,
    counts_for_tokens,
    dataset_labels,
    finetune_classifier,
    load_tokenized,
    logistic_regression_baseline,
    obs_for_tokens,
    split_by_group,
)
from genecompass.annotation.metrics import plot_confusion
from genecompass.utils import atomic_output, logged_to, write_json

with logged_to(snakemake.log[0]):
    dataset_spec = snakemake.params.dataset
    task = snakemake.params.task
    method = snakemake.wildcards.method
    seeds = snakemake.params.seeds
    qc_paths = dict(zip(dataset_spec["samples"], snakemake.input.h5ad))
    cells = load_tokenized(list(snakemake.input.shards))
    obs = obs_for_tokens(cells, qc_paths)
    label_column = dataset_spec["label_column"]
    labels = dataset_labels(obs, label_column, source=", ".join(snakemake.input.h5ad),
                            setting=f"tasks.annotation.datasets '{snakemake.wildcards.dataset}' label_column")
    counts = counts_for_tokens(cells, qc_paths) if method == "logistic_regression" else None
    results, splits = [], []
    for seed in seeds:
        # The seed draws the validation cells (when no validation groups are given),
        # the head's initial weights and the batch order; the test groups stay fixed.
        split = split_by_group(obs, dataset_spec["group_column"], dataset_spec["test_groups"],
                               dataset_spec.get("validation_groups"), task.get("validation_fraction", 0.1), seed,
                               label_column=label_column,
                               train_cells_per_label=dataset_spec.get("train_cells_per_label"))
        assignment = split.assignment.loc[obs.index].to_numpy()
        print(f"seed {seed}:\n{split.counts().to_string()}")
        if method == "logistic_regression":
            result = logistic_regression_baseline(counts, labels, assignment,
                                                  BaselineSettings(**{**task.get("baseline", {}), "seed": seed}))
        else:
            init = {"genecompass": "pretrained", "genecompass_no_pretraining": "random"}[method]
            settings = FinetuneSettings.from_config({**task.get("finetune", {}), **dataset_spec.get("finetune", {})},
                                                    seed)
            result = finetune_classifier(cells, labels, assignment, snakemake.input.model, init=init,
                                         settings=settings)
        print(f"seed {seed}:", {k: result.metrics[k] for k in ("accuracy", "macro_f1", "n_cells")})
        results.append(result)
        splits.append(split.to_dict())
    summary, predictions = combine_seed_runs(results, seeds, obs.index)
    summary.update(method=method, dataset=snakemake.wildcards.dataset, splits=splits)
    print("mean", summary["mean"], "sd", summary["sd"])
    write_json(summary, snakemake.output.metrics)
    with atomic_output(snakemake.output.predictions) as tmp:
        predictions.to_csv(tmp, sep="\t", index=False)
    consensus = summary["consensus"]
    plot_confusion(consensus["confusion_matrix"], consensus["labels"], snakemake.output.figure,
                   title=f"{method}: {snakemake.wildcards.dataset} (test cells, mean probability over "
                         f"{len(seeds)} seeds)")
