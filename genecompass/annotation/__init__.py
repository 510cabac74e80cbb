"""Cell-type annotation tasks.

- :mod:`.came`: cross-species annotation with CAME (a heterogeneous cell–gene
  graph network) on ``torch_geometric``, optionally with GeneCompass gene
  embeddings as the initial gene features ("GeneCompass+CAME").
"""
