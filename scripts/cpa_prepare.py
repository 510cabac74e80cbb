"""Rule cpa_prepare: load a dose-response dataset, split it (held-out doses = OOD), rank DE genes."""

from genecompass.drug.dose_response import prepare, write_prepared
from genecompass.utils import logged_to, write_json

with logged_to(snakemake.log[0]):
    prepared, report = prepare(snakemake.params.entry, snakemake.input.data, snakemake.params.task,
                               snakemake.params.seed)
    write_prepared(prepared, snakemake.params.outdir)
    write_json(report, snakemake.output.report)
    print(report)
