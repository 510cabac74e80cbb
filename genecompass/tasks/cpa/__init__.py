"""Drug dose response with CPA (paper: "Drug dose response prediction", Fig. 4c).

- :mod:`.model`: CPA re-implemented in torch, with its own or GeneCompass-derived per-gene decoder weights.
- :mod:`.run`: prepare a dataset, run one method, evaluate them all (rules ``cpa_*``).
- :mod:`.methods`: the method names the workflow plans with (no heavy import).

Drug data, molecules and the fingerprint baseline shared with DeepCE: :mod:`genecompass.drug`.
"""
