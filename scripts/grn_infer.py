"""Rule grn_infer: one method's ranked TF->gene edges on one GRN dataset, scored against every network."""

from genecompass.embedding_files import read_symbol_vectors
from genecompass.grn.beeline import read_ranked_edges, write_ranked_edges
from genecompass.grn.task import evaluate_networks, method_edges, read_grn_dataset
from genecompass.tasks.grn.methods import method_variant
from genecompass.utils import atomic_output, logged_to

with logged_to(snakemake.log[0]):
    method = snakemake.wildcards.method
    expression, tfs, networks = read_grn_dataset(snakemake.input.dataset)
    vectors = None
    if method_variant(method):
        vectors = read_symbol_vectors(snakemake.input.contextual, snakemake.input.static, snakemake.params.species)
        print(f"{method_variant(method)} embeddings cover {expression.index.isin(vectors.index).mean():.1%} "
              "of the dataset's genes")
    deepsem = read_ranked_edges(snakemake.input.deepsem) if method.startswith("deepsem_prior_") else None
    edges = method_edges(method, expression, tfs, seed=snakemake.params.seed, settings=snakemake.params.task,
                         vectors=vectors, deepsem=deepsem, n_jobs=snakemake.threads)
    table = evaluate_networks(edges, networks, expression.index, tfs)
    table.insert(0, "method", method)
    print(table.to_string(index=False))
    write_ranked_edges(edges, snakemake.output.edges)
    with atomic_output(snakemake.output.metrics) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
