"""Rule gene_families: HGNC gene groups (human), carried to mouse through orthologs."""

import logging

from genecompass.genes import read_orthologs
from genecompass.references import mouse_gene_groups, read_gene_groups, summarize_gene_groups
from genecompass.utils import atomic_output, logged_to

with logged_to(snakemake.log[0]):
    groups = read_gene_groups(snakemake.input.hgnc)
    if snakemake.wildcards.species == "mouse":
        groups = mouse_gene_groups(groups, read_orthologs(snakemake.input.orthologs))
    logging.getLogger("genecompass.references").info("gene groups: %s", summarize_gene_groups(groups))
    with atomic_output(snakemake.output[0]) as tmp:
        groups.to_csv(tmp, sep="\t", index=False)
