"""Rule gene_table: any supported gene-table layout -> our TSV."""

from genecompass.genes import read_gene_table, write_gene_table
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    table = read_gene_table(snakemake.input[0], snakemake.wildcards.species)
    write_gene_table(table, snakemake.output[0])
