"""Perturbation prediction (paper: "In silico perturbation", Fig. 5).

- :mod:`.data`: GEARS's processed layout, its simulation split, DE genes, GO and co-expression graphs.
- :mod:`.gears`: GEARS re-implemented on torch_geometric, optionally with GeneCompass gene embeddings.
- :mod:`.baselines`: Train Mean and regressors on GO or GeneCompass features.
- :mod:`.metrics`: Pearson delta, top-20-DE errors, per subgroup.
- :mod:`.run`: prepare a dataset, run one method, evaluate them all (rules ``perturbation_*``).
- :mod:`.methods`: the method names the workflow plans with (no heavy import).
"""
