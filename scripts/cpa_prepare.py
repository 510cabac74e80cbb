"""Rule cpa_prepare: load a dose-response dataset, drop drugs without SMILES, split it (held-out
doses = OOD), rank DE genes."""

from genecompass.drug.data import read_smiles_table
from genecompass.drug.dose_response import prepare, write_prepared
from genecompass.utils import logged_to, write_json

with logged_to(snakemake.log[0]):
    prepared, report = prepare(snakemake.params.entry, snakemake.input.data, snakemake.params.task,
                               snakemake.params.seed, read_smiles_table(snakemake.input.smiles))
    write_prepared(prepared, snakemake.params.outdir)
    write_json(report, snakemake.output.report)
    print(report)
