"""Rule promoter_sequences: the configured promoter source -> one FASTA."""

from genecompass.references import read_promoters, write_promoters_fasta
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    inputs = {key: snakemake.input[key] for key in snakemake.input.keys()}
    promoters = read_promoters(inputs, snakemake.params.upstream, snakemake.params.downstream)
    print(f"{len(promoters)} promoters of {promoters['ensembl_id'].nunique()} genes")
    write_promoters_fasta(promoters, snakemake.output[0])
