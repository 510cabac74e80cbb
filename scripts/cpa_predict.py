"""Rule cpa_predict: one method's predicted mean and variance per treated condition, and its
dose-response curves."""

from pathlib import Path

from genecompass.drug.data import read_smiles_table
from genecompass.drug.dose_response import read_prepared, run_method
from genecompass.embedding_files import read_symbol_vectors
from genecompass.utils import atomic_output, logged_to, write_json

with logged_to(snakemake.log[0]):
    task = snakemake.params.task
    prepared = read_prepared(Path(snakemake.input.prepared).parent)
    smiles = read_smiles_table(snakemake.input.smiles) if "smiles" in snakemake.input.keys() else None
    symbols = None
    if "contextual" in snakemake.input.keys():
        symbols = read_symbol_vectors(snakemake.input.contextual, snakemake.input.static, snakemake.params.species)
    predictions, curves, info = run_method(snakemake.wildcards.method, prepared, smiles, snakemake.params.seed,
                                           task.get("model", {}), symbols)
    with atomic_output(snakemake.output.predictions) as tmp:
        predictions.write_h5ad(tmp)
    with atomic_output(snakemake.output.curves) as tmp:
        curves.to_csv(tmp, sep="\t", index=False)
    write_json(info, snakemake.output.info)
