"""The downstream tasks of the paper, one package per config task (``tasks.<name>`` in the config).

Each package's ``methods.py`` holds the names the workflow plans with (methods, outputs, which
methods read GeneCompass embeddings). It imports nothing heavy, so that parsing the workflow
(``snakemake -n``, ``--lint``, ``--report``) never loads torch, transformers or scanpy.
"""

# The config's task keys, in the order the summary and the report list them.
TASKS = ("annotation", "came", "grn", "perturbation", "cpa", "deepce", "dosage", "insilico")
