"""Rule ``annotate``: one dataset annotated by one method over several seeds, the consensus and its figure."""

from __future__ import annotations

from genecompass.corpus import load_tokenized
from genecompass.tasks.annotation.finetune import (
    BaselineSettings,
    FinetuneSettings,
    combine_seed_runs,
    counts_for_tokens,
    dataset_labels,
    finetune_classifier,
    logistic_regression_baseline,
    obs_for_tokens,
    split_by_group,
)
from genecompass.tasks.annotation.methods import method_uses_model
from genecompass.tasks.annotation.metrics import plot_confusion
from genecompass.utils import atomic_output, write_json

INITS = {"genecompass": "pretrained", "genecompass_no_pretraining": "random"}


def annotate(dataset: dict, task: dict, method: str, seeds: list[int], shards: list[str], qc_files: list[str],
             model_dir: str | None, out_metrics, out_predictions, out_figure) -> dict:
    """Annotate ``dataset`` (a ``tasks.annotation.datasets`` entry; ``task``: the ``tasks.annotation`` section)
    with ``method`` once per seed; write the summary (JSON), the per-cell predictions and the confusion figure.

    The seed draws the validation cells (when no validation groups are given), the label-budget cells,
    the head's initial weights and the batch order; the test groups stay fixed.
    """
    qc_paths = dict(zip(dataset["samples"], qc_files))
    cells = load_tokenized(list(shards))
    obs = obs_for_tokens(cells, qc_paths)
    label_column = dataset["label_column"]
    labels = dataset_labels(obs, label_column, source=", ".join(qc_files),
                            setting=f"tasks.annotation.datasets '{dataset['name']}' label_column")
    counts = None if method_uses_model(method) else counts_for_tokens(cells, qc_paths)
    finetune = {**task.get("finetune", {}), **dataset.get("finetune", {})}
    results, splits = [], []
    for seed in seeds:
        split = split_by_group(obs, dataset["group_column"], dataset["test_groups"], dataset.get("validation_groups"),
                               task.get("validation_fraction", 0.1), seed, label_column=label_column,
                               train_cells_per_label=dataset.get("train_cells_per_label"))
        assignment = split.assignment.loc[obs.index].to_numpy()
        print(f"seed {seed}:\n{split.counts().to_string()}")
        if method_uses_model(method):
            result = finetune_classifier(cells, labels, assignment, model_dir, init=INITS[method],
                                         settings=FinetuneSettings.from_config(finetune, seed))
        else:
            result = logistic_regression_baseline(counts, labels, assignment,
                                                  BaselineSettings(**{**task.get("baseline", {}), "seed": seed}))
        print(f"seed {seed}:", {k: result.metrics[k] for k in ("accuracy", "macro_f1", "n_cells")})
        results.append(result)
        splits.append(split.to_dict())
    summary, predictions = combine_seed_runs(results, seeds, obs.index)
    summary.update(method=method, dataset=dataset["name"], splits=splits)
    print("mean", summary["mean"], "sd", summary["sd"])
    write_json(summary, out_metrics)
    with atomic_output(out_predictions) as tmp:
        predictions.to_csv(tmp, sep="\t", index=False)
    consensus = summary["consensus"]
    plot_confusion(consensus["confusion_matrix"], consensus["labels"], out_figure,
                   title=f"{method}: {dataset['name']} (test cells, mean probability over {len(seeds)} seeds)")
    return summary
