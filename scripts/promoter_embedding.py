"""Rule promoter_embedding: promoters -> DNA BERT (trained here or a local DNABERT) -> gene vectors."""

import pandas as pd

from genecompass.knowledge.gene2vec import GeneVectors, save_gene_vectors
from genecompass.knowledge.promoter import promoter_embeddings, promoter_quality
from genecompass.references import read_promoters_fasta
from genecompass.utils import logged_to, write_json

with logged_to(snakemake.log[0]):
    settings = dict(snakemake.params.settings)
    promoters = read_promoters_fasta(snakemake.input.promoters)
    ids, matrix, stats = promoter_embeddings(
        promoters, snakemake.output.model, dim=snakemake.params.dim,
        k=settings["k"], epochs=settings["epochs"], lr=settings["lr"], batch_size=settings["batch_size"],
        seed=snakemake.params.seed, device=settings["device"], dtype=settings.get("dtype", "float32"),
        pretrained_dir=settings.get("pretrained_dir"), max_tokens=settings["max_tokens"],
        num_layers=settings["layers"], num_heads=settings["heads"], dropout=settings.get("dropout", 0.1),
    )
    vectors = GeneVectors(list(ids), matrix)
    save_gene_vectors(vectors, snakemake.output.vectors, metadata={"kind": "promoter"})
    families = pd.read_csv(snakemake.input.families, sep="\t", dtype=str)
    quality = promoter_quality(vectors, promoters, families, settings["k"], snakemake.params.seed)
    write_json({**stats, **quality,
                "species": snakemake.wildcards.species}, snakemake.output.quality)
