"""Rule deepce_predict: one method's predicted changes of the held-out drugs' signatures."""

from pathlib import Path

from genecompass.drug.profiling import read_gene_vectors, read_prepared, run_method
from genecompass.embedding_files import read_symbol_vectors
from genecompass.utils import atomic_output, logged_to, write_json

with logged_to(snakemake.log[0]):
    task = snakemake.params.task
    prepared = read_prepared(Path(snakemake.input.prepared).parent)
    gene_table = None
    if "contextual" in snakemake.input.keys():
        gene_table = read_symbol_vectors(snakemake.input.contextual, snakemake.input.static,
                                         snakemake.params.species)
    elif "gene_vectors" in snakemake.input.keys():
        gene_table = read_gene_vectors(snakemake.input.gene_vectors)
    predictions, info = run_method(snakemake.wildcards.method, prepared, snakemake.params.seed, task.get("model", {}),
                                   gene_table)
    with atomic_output(snakemake.output.predictions) as tmp:
        predictions.to_csv(tmp, sep="\t", index=False, float_format="%.5f")
    write_json(info, snakemake.output.info)
