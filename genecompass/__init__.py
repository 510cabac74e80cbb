"""GeneCompass: a reproducible, knowledge-informed single-cell foundation model workflow.

The library holds all logic; Snakemake rules and scripts only wire files to it.
"""

__version__ = "0.1.0"
