"""Rule embedding_analysis: homologous vs non-homologous gene similarity and within-cell similarity per model."""

import numpy as np
import pandas as pd

from genecompass.embedding_analysis import cross_species_similarity, plot_similarity, summarize
from genecompass.embedding_files import load_sample_embeddings, read_gene_table
from genecompass.utils import atomic_output, logged_to

with logged_to(snakemake.log[0]):
    pairs, within = {}, {}
    for variant in snakemake.params.variants:
        keys, vectors = read_gene_table(snakemake.input[f"contextual_{variant}"])
        pairs[variant] = cross_species_similarity(keys, vectors, snakemake.params.n_pairs, snakemake.params.seed)
        by_species = {}
        for name, path in snakemake.input.items():
            if name.startswith(f"sample_{variant}_"):
                result, species = load_sample_embeddings(path)
                by_species.setdefault(species, []).append(result.within_cell_cosine)
        within[variant] = {species: np.concatenate(parts) for species, parts in by_species.items()}
    summary = summarize(pairs, within)
    print(summary.to_string(index=False))
    with atomic_output(snakemake.output.summary) as tmp:
        summary.to_csv(tmp, sep="\t", index=False)
    table = pd.concat([frame.assign(variant=variant) for variant, frame in pairs.items()], ignore_index=True)
    with atomic_output(snakemake.output.pairs) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    plot_similarity(pairs, within, snakemake.output.figure)
