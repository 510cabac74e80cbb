"""Rule orthologs: Ensembl BioMart export -> one row per human-mouse pair."""

from genecompass.genes import read_orthologs, write_orthologs
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    write_orthologs(read_orthologs(snakemake.input[0]), snakemake.output[0])
