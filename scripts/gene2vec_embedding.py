"""Rule gene2vec_embedding: GRN, family or co-expression pairs -> gene2vec vectors."""

import pandas as pd

from genecompass.knowledge.build import Gene2VecSettings, embed_pairs, knowledge_pairs
from genecompass.knowledge.gene2vec import save_gene_vectors
from genecompass.utils import logged_to, write_json

with logged_to(snakemake.log[0]):
    kind, species = snakemake.wildcards.kind, snakemake.wildcards.species
    settings = snakemake.params.settings
    table = pd.concat([pd.read_csv(path, sep="\t", dtype=str) for path in snakemake.input], ignore_index=True)
    pairs = knowledge_pairs(kind, table, settings["family_max_pairs_per_group"], snakemake.params.seed)
    gene2vec = Gene2VecSettings(dim=settings["dim"], seed=snakemake.params.seed, **settings["gene2vec"])
    vectors, quality = embed_pairs(kind, pairs, gene2vec, settings["heldout_fraction"])
    save_gene_vectors(vectors, snakemake.output.vectors, metadata={"kind": kind, "species": species})
    write_json({**quality, "species": species}, snakemake.output.quality)
