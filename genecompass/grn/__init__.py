"""GRN inference and its evaluation (paper: "GRN inference", Fig. 4b).

- :mod:`.beeline`: BEELINE-format files (expression, ground-truth networks,
  TF lists, ranked edges) and BEELINE-style scores (AUPRC, AUPRC ratio, early
  precision and EPR, AUROC) over TF→gene candidate pairs.
- :mod:`.deepsem`: DeepSEM (β-VAE with a structural-equation layer) in torch,
  and the GeneCompass update of its output by a binary gene-embedding prior.
- :mod:`.baselines`: correlation, GENIE3, optional GRNBoost2, random and
  embedding-cosine rankings.

Every method returns a ranked edge table with columns ``source, target, score``.
"""
