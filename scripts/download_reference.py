"""Rule download_reference: fetch a reference file and verify its checksum."""

from genecompass.downloads import resolve_reference
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    resolve_reference(snakemake.params.entry, snakemake.params.cache)
