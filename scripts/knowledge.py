"""Rule knowledge: align the four knowledge embeddings to the token dictionary."""

from genecompass.dictionary import read_dictionary
from genecompass.knowledge.assemble import assemble_knowledge, coverage_table, plot_coverage, save_knowledge
from genecompass.knowledge.build import quality_table, read_knowledge_inputs
from genecompass.utils import atomic_output, logged_to

with logged_to(snakemake.log[0]):
    dictionary = read_dictionary(snakemake.input.dictionary)
    embeddings, reports = read_knowledge_inputs(
        {name: snakemake.input[name] for name in snakemake.input.keys() if name != "dictionary"})
    knowledge = assemble_knowledge(dictionary, embeddings, snakemake.params.dim)
    save_knowledge(knowledge, snakemake.output.knowledge)
    coverage = coverage_table(knowledge, dictionary)
    print(coverage.to_string(index=False))
    with atomic_output(snakemake.output.coverage) as tmp:
        coverage.to_csv(tmp, sep="\t", index=False)
    plot_coverage(coverage, snakemake.output.figure)
    with atomic_output(snakemake.output.quality) as tmp:
        quality_table(reports).to_csv(tmp, sep="\t", index=False)
