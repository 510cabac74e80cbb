"""Rule grn_summary: every method's scores on one GRN dataset in one table and one figure."""

import pandas as pd

from genecompass.grn.task import plot_method_table
from genecompass.utils import atomic_output, logged_to

with logged_to(snakemake.log[0]):
    table = pd.concat([pd.read_csv(path, sep="\t") for path in snakemake.input.metrics], ignore_index=True)
    wide = table.pivot(index="method", columns="network", values=["auprc_ratio", "epr"]).round(3)
    print(wide.loc[snakemake.params.methods].to_string())
    with atomic_output(snakemake.output.table) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    plot_method_table(table, snakemake.output.figure, title=f"GRN inference: {snakemake.wildcards.dataset}")
