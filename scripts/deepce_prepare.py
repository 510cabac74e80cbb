"""Rule deepce_prepare: signatures of an L1000 plate against its vehicle wells, drugs split whole."""

from genecompass.drug.profiling import prepare, write_prepared
from genecompass.utils import logged_to, write_json

with logged_to(snakemake.log[0]):
    prepared, report = prepare(snakemake.params.entry, snakemake.input.data, snakemake.input.smiles,
                               snakemake.params.task, snakemake.params.seed)
    write_prepared(prepared, snakemake.params.outdir)
    write_json(report, snakemake.output.report)
    print(report)
