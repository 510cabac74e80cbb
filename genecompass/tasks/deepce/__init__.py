"""Gene expression profiling with DeepCE (paper: "Gene expression profiling prediction", Fig. 4d).

- :mod:`.model`: DeepCE re-implemented in torch, with its own or GeneCompass gene features.
- :mod:`.metrics`: per-profile Pearson, Spearman, RMSE and precision@k.
- :mod:`.run`: prepare a plate, run one method, evaluate them all (rules ``deepce_*``).
- :mod:`.methods`: the method names the workflow plans with (no heavy import).

Drug data, molecules and the fingerprint baseline shared with CPA: :mod:`genecompass.drug`.
"""
