# Functions of rules/references.smk (input functions, params, targets): Snakemake's linter wants
# rules and functions in separate files. Included just before it.


def species_gene_table_source(wildcards):
    return reference_file(config["references"][f"{wildcards.species}_genes"])


def downloads():
    """File name in the cache -> the entry ({url, sha256}) to download it from."""
    return plan.downloads(config, REFERENCE_CACHE)


def download_params(wildcards):
    return downloads()[wildcards.filename]
