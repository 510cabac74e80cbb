"""Rule summary_table: every task's rows in one table."""

import pandas as pd

from genecompass.summary import COLUMNS, write_table
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    table = pd.concat([pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""])
                       for path in snakemake.input], ignore_index=True)[COLUMNS]
    print(table.groupby(["task", "dataset"]).method.nunique().to_string())
    write_table(table, snakemake.output[0])
