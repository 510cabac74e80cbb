"""Rule cell_embeddings: the QC'd sample with its GeneCompass cell embeddings in obsm."""

import anndata as ad
import numpy as np

from genecompass.embed import load_sample_embeddings
from genecompass.utils import atomic_output, logged_to

with logged_to(snakemake.log[0]):
    result, species = load_sample_embeddings(snakemake.input.embeddings)
    adata = ad.read_h5ad(snakemake.input.h5ad)
    position = {cell: i for i, cell in enumerate(result.cell_ids)}
    rows = np.array([position.get(str(cell), -1) for cell in adata.obs_names])
    if (rows < 0).any():
        missing = adata.obs_names[rows < 0][:5].tolist()
        raise ValueError(f"{snakemake.input.embeddings}: no embedding for {(rows < 0).sum()} cells of "
                         f"{snakemake.input.h5ad} (e.g. {missing}); re-run the tokenize and embed_sample rules")
    adata.obsm["X_genecompass"] = result.cell_embeddings[rows]
    adata.obs["genecompass_within_cell_cosine"] = result.within_cell_cosine[rows]
    adata.uns["genecompass"] = {"variant": snakemake.wildcards.variant, "species": species}
    with atomic_output(snakemake.output[0]) as tmp:
        adata.write_h5ad(tmp, compression="gzip")
