"""Gene dosage sensitivity (paper: "Gene dosage sensitivity predictions", Fig. 4e).

- :mod:`.finetune`: the token-classification head fine-tuned over gene folds (pretrained and random
  weights), logistic regression on the knowledge vectors, ROC-AUC summaries and the ROC figure.
- :mod:`.methods`: the method names the workflow plans with (no heavy import).
"""
