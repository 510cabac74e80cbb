"""Rule gene_embeddings: contextual (per species) and static gene-embedding tables of one model."""

from genecompass.dictionary import read_dictionary
from genecompass.embed import load_encoder, static_gene_table
from genecompass.embedding_files import contextual_gene_table, load_sample_embeddings, pool_by_species
from genecompass.utils import atomic_output, logged_to

with logged_to(snakemake.log[0]):
    dictionary = read_dictionary(snakemake.input.dictionary)
    samples = [load_sample_embeddings(path) for name, path in snakemake.input.items() if name.startswith("sample_")]
    contextual = contextual_gene_table(pool_by_species(samples), dictionary)
    print(contextual.groupby("species")["token_id"].count().to_string())
    with atomic_output(snakemake.output.contextual) as tmp:
        contextual.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    static = static_gene_table(load_encoder(snakemake.input.model, "cpu"), dictionary)
    with atomic_output(snakemake.output.static) as tmp:
        static.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
