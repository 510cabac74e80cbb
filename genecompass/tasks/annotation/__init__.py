"""Single-species cell-type annotation (paper: "Single-species cell type annotation").

- :mod:`.finetune`: GeneCompass fine-tuned with a classification head (pretrained or random weights),
  the group-wise splits and label budgets, and the logistic-regression baseline.
- :mod:`.metrics`: accuracy, macro-F1, the confusion figure.
- :mod:`.run`: one dataset by one method over several seeds (rule ``annotate``).
- :mod:`.methods`: the method names the workflow plans with (no heavy import).
"""
