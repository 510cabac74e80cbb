"""Cross-species cell-type annotation with CAME (paper: "Cross-species cell type annotation").

- :mod:`.model`: CAME re-implemented on torch_geometric (heterogeneous cell-gene graph network),
  optionally with GeneCompass gene embeddings as the initial gene features.
- :mod:`.run`: one reference/query pair by one method over several seeds (rule ``came``).
- :mod:`.methods`: the method names the workflow plans with (no heavy import).
"""
