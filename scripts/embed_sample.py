"""Rule embed_sample: cell embeddings, within-cell gene cosines and contextual gene sums of one sample."""

import anndata as ad
import datasets

from genecompass.embed import embed_dataset, load_encoder
from genecompass.embedding_files import save_sample_embeddings, select_gene_cells
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    settings = snakemake.params.settings
    cells = settings.get("cells") or {}
    shard = datasets.Dataset.from_file(snakemake.input.shard)
    obs = ad.read_h5ad(snakemake.input.h5ad, backed="r").obs
    max_cells = cells.get("max_cells_per_species")
    if max_cells is not None:  # the species' budget, shared evenly by its samples
        max_cells = max(1, max_cells // snakemake.params.species_samples)
    gene_cells = select_gene_cells(obs, shard["cell_id"], cells.get("obs_column"), cells.get("value"),
                                   max_cells, seed=snakemake.params.seed)
    model = load_encoder(snakemake.input.model, settings["device"])
    result = embed_dataset(model, shard, batch_size=settings["batch_size"], max_length=snakemake.params.max_length,
                           gene_cells=gene_cells, dtype=settings.get("dtype", "float32"))
    species = shard[0]["species"] if len(shard) else "unknown"
    print(f"{len(result.cell_ids)} cells embedded; {int(gene_cells.sum())} feed the gene embeddings")
    save_sample_embeddings(result, snakemake.output[0], species)
