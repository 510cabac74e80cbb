"""Rule cell_embeddings: the QC'd sample with its GeneCompass cell embeddings in obsm."""

import anndata as ad

from genecompass.embedding_files import attach_cell_embeddings, load_sample_embeddings
from genecompass.utils import atomic_output, logged_to

with logged_to(snakemake.log[0]):
    result, species = load_sample_embeddings(snakemake.input.embeddings)
    adata = ad.read_h5ad(snakemake.input.h5ad)
    attach_cell_embeddings(adata, result, source=snakemake.input.embeddings)
    adata.uns["genecompass"] = {"variant": snakemake.wildcards.variant, "species": species}
    with atomic_output(snakemake.output[0]) as tmp:
        adata.write_h5ad(tmp, compression="gzip")
