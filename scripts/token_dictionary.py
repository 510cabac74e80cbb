"""Rule token_dictionary: gene tables + orthologs -> homolog token table."""

from genecompass.dictionary import build_dictionary, write_dictionary
from genecompass.genes import read_gene_table, read_orthologs
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    table = build_dictionary(
        read_gene_table(snakemake.input.human, "human"),
        read_gene_table(snakemake.input.mouse, "mouse"),
        read_orthologs(snakemake.input.orthologs),
        policy=snakemake.params.policy,
        core_biotypes=tuple(snakemake.params.core_biotypes),
        min_confidence=snakemake.params.min_confidence,
    )
    write_dictionary(table, snakemake.output.table, snakemake.output.summary)
