"""Rule grn_network: every configured TF->target network of a species, mapped to Ensembl IDs."""

import logging

from genecompass.genes import read_gene_table
from genecompass.references import hgnc_ensembl_ids, read_networks
from genecompass.utils import atomic_output, logged_to

with logged_to(snakemake.log[0]):
    species = snakemake.wildcards.species
    preferred = hgnc_ensembl_ids(snakemake.input.hgnc[0]) if snakemake.input.hgnc else None
    entries = [{"path": path, **{k: v for k, v in spec.items() if v}}
               for path, spec in zip(snakemake.input.networks, snakemake.params.specs)]
    network = read_networks(entries, read_gene_table(snakemake.input.genes, species), species,
                            preferred_ids=preferred)
    logging.getLogger("genecompass.references").info("networks: %s", network.attrs.pop("report"))
    with atomic_output(snakemake.output[0]) as tmp:
        network.to_csv(tmp, sep="\t", index=False)
