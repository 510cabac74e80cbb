"""Rule gene_medians: merge the samples' histograms into corpus-wide medians."""

from genecompass.dictionary import read_dictionary
from genecompass.tokenize import TokenHistogram, medians_from_histogram, merge_histograms, write_medians
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    merged = merge_histograms(TokenHistogram.load(path) for path in snakemake.input.histograms)
    dictionary = read_dictionary(snakemake.input.dictionary)
    write_medians(medians_from_histogram(merged), snakemake.output[0],
                  dict(zip(dictionary["token_id"], dictionary["token"])))
