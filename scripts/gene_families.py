"""Rule gene_families: HGNC gene groups (human), carried to mouse through orthologs."""

from genecompass.references import species_gene_groups
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    species_gene_groups(snakemake.input.hgnc, snakemake.wildcards.species, snakemake.input.orthologs,
                        snakemake.output[0])
