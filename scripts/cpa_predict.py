"""Rule cpa_predict: one method's predicted mean and variance per treated condition, and its
dose-response curves."""

from pathlib import Path

import torch

from genecompass.devices import resolve_device
from genecompass.drug.data import read_smiles_table
from genecompass.drug.dose_response import read_prepared, run_method
from genecompass.embed import read_symbol_vectors
from genecompass.utils import atomic_output, logged_to, write_json

with logged_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    task = snakemake.params.task
    prepared = read_prepared(Path(snakemake.input.prepared).parent)
    smiles = read_smiles_table(snakemake.input.smiles) if "smiles" in snakemake.input.keys() else None
    symbols = None
    if "contextual" in snakemake.input.keys():
        symbols = read_symbol_vectors(snakemake.input.contextual, snakemake.input.static, snakemake.params.species)
    model = dict(task.get("model", {}))
    model["device"] = str(resolve_device(model.get("device", "auto")))
    predictions, curves, info = run_method(snakemake.wildcards.method, prepared, smiles, snakemake.params.seed,
                                           model, symbols)
    with atomic_output(snakemake.output.predictions) as tmp:
        predictions.write_h5ad(tmp)
    with atomic_output(snakemake.output.curves) as tmp:
        curves.to_csv(tmp, sep="\t", index=False)
    write_json(info, snakemake.output.info)
