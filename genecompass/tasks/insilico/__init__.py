"""In-silico quantitative perturbation with a pretrained model (paper: Fig. 2b-g, Fig. 6).

- :mod:`.perturb`: deletion, overexpression and knock-down of genes in tokenized cells, and the shifts
  of cell and gene embeddings they cause.
- :mod:`.analysis`: shifts against random gene sets, candidate ranking, deletion tests, figures.
- :mod:`.run`: the three experiments of a dataset (rules ``insilico_*``).
- :mod:`.methods`: the outputs the workflow plans with (no heavy import).
"""
