"""Rule perturbation_predict: one method's pseudo-bulk predictions for the held-out conditions."""

from pathlib import Path

from genecompass.embedding_files import read_symbol_vectors
from genecompass.perturb.data import read_gmt
from genecompass.perturb.task import read_prepared, run_method
from genecompass.utils import atomic_output, logged_to, write_json

with logged_to(snakemake.log[0]):
    task = snakemake.params.task
    method = snakemake.wildcards.method
    prepared = read_prepared(Path(snakemake.input.prepared).parent)
    symbols = None
    if "contextual" in snakemake.input.keys():
        symbols = read_symbol_vectors(snakemake.input.contextual, snakemake.input.static, snakemake.params.species)
    predictions, info = run_method(method, prepared, read_gmt(snakemake.input.go), snakemake.params.seed,
                                   task.get("gears", {}), task.get("baseline", {}), symbols)
    with atomic_output(snakemake.output.predictions) as tmp:
        predictions.to_csv(tmp, sep="\t", index_label="condition")
    write_json(info, snakemake.output.info)
