"""Rule qc: read one sample, harmonise gene IDs, apply the QC filters."""

from genecompass.qc import QCParams, qc_sample
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    qc_sample(
        counts_path=snakemake.input.counts,
        fmt=snakemake.params.fmt,
        genome=snakemake.params.genome or None,
        species=snakemake.params.species,
        sample=snakemake.wildcards.sample,
        gene_table_path=snakemake.input.genes,
        hgnc_path=snakemake.input.hgnc[0] if snakemake.input.hgnc else None,
        counts=snakemake.params.counts,
        gene_column=snakemake.params.gene_column,
        params=QCParams.from_dict(snakemake.params.qc),
        out_h5ad=snakemake.output.h5ad,
        out_filters=snakemake.output.filters,
        out_gene_report=snakemake.output.genes,
        out_figure=snakemake.output.figure,
    )
