"""The synthetic demo world and its experiments, every planted truth written beside the data.

- :mod:`.world`: genes, orthologs, gene families, TF networks, promoters and raw counts of the demo
  samples in every input format (h5ad, 10x h5, 10x mtx), with the planted QC, cell types and programmes.
- :mod:`.perturbseq`: a Norman-like CRISPRa Perturb-seq experiment in GEARS's processed layout.
- :mod:`.drug`: a sci-Plex-like dose-response screen (CPA) and an L1000-like plate (DeepCE).
- :mod:`.insilico`: the truth of the in-silico tasks (fate drivers, housekeeping genes, dosage labels).
"""
