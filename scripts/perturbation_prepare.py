"""Rule perturbation_prepare: checked cells, selected genes, GEARS's simulation split, DE genes."""

from genecompass.perturb.data import read_gmt
from genecompass.perturb.task import prepare, write_prepared
from genecompass.utils import logged_to, write_json

with logged_to(snakemake.log[0]):
    task = snakemake.params.task
    prepared, report = prepare(snakemake.input.data, read_gmt(snakemake.input.go), task.get("n_top_genes"),
                               task.get("n_de_genes", 20), snakemake.params.seed, task.get("split"))
    print(report)
    write_prepared(prepared, snakemake.params.outdir)
    write_json(report, snakemake.output.report)
