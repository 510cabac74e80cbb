"""GRN inference and its evaluation (paper: "GRN inference", Fig. 4b).

- :mod:`.beeline`: BEELINE-format files (expression, ground-truth networks,
  TF lists, ranked edges) and BEELINE-style scores (AUPRC, AUPRC ratio, early
  precision and EPR, AUROC) over TF→gene candidate pairs.
- :mod:`.deepsem`: DeepSEM (β-VAE with a structural-equation layer) in torch.
- :mod:`.prior`: the GeneCompass update of DeepSEM's output by a binary
  gene-embedding prior.
- :mod:`.baselines`: correlation, GENIE3, optional GRNBoost2, random and
  embedding-cosine rankings.
- :mod:`.ugrn`: universal GRN pair features from a frozen model (embedding,
  zero-out, Virtual Value Perturbation, Gradient Trajectory) and the translator
  trained on one dataset's network, scored on others.
- :mod:`.deletion`: in-silico deletion of a TF and the precision of the genes
  whose contextual embeddings move most.
- :mod:`.run`: the workflow's task layer: dataset export, per-method rankings,
  the prior threshold sweep, UGRN and deletion tables.
- :mod:`.methods`: the method names the workflow plans with (no heavy import).

Every method returns a ranked edge table with columns ``source, target, score``.
"""
