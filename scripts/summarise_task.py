"""Rule summarise_task: one task's results as rows of the tidy summary table, and its figure."""

from genecompass.summary import plot_task, summary_table, write_table
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    task = snakemake.wildcards.task
    table = summary_table(list(snakemake.params.entries), controls=tuple(snakemake.params.controls))
    print(table.to_string(max_rows=200))
    write_table(table, snakemake.output.table)
    plot_task(table, task, snakemake.output.figure)
