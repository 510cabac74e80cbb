"""Rule coexpression_pairs: gene pairs with high PCC over co-expressing cells of one sample."""

from genecompass.knowledge.coexpression import coexpression_from_h5ad
from genecompass.utils import atomic_output, logged_to

with logged_to(snakemake.log[0]):
    settings = snakemake.params.settings
    pairs, stats = coexpression_from_h5ad(
        [snakemake.input[0]], threshold=settings["min_pcc"], min_cells=settings["min_cells"],
        max_cells=settings["n_cells"], seed=snakemake.params.seed, values=settings.get("values", "log_counts"),
        min_matrix_cells=settings.get("min_matrix_cells", 0),
    )
    print(stats.to_string(index=False))
    with atomic_output(snakemake.output.pairs) as tmp:
        pairs.to_csv(tmp, sep="\t", index=False)
    with atomic_output(snakemake.output.stats) as tmp:
        stats.to_csv(tmp, sep="\t", index=False)
