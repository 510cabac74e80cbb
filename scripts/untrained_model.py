"""Rule untrained_model: the main variant's architecture and knowledge, seeded initial weights."""

import torch

from genecompass.dictionary import read_dictionary
from genecompass.knowledge.assemble import load_knowledge
from genecompass.model import GeneCompassConfig, GeneCompassForPretraining
from genecompass.utils import atomic_output, logged_to

with logged_to(snakemake.log[0]):
    dictionary = read_dictionary(snakemake.input.dictionary)
    knowledge = load_knowledge(snakemake.input.knowledge, dictionary)
    config = GeneCompassConfig.for_variant(snakemake.params.model_section, snakemake.params.variant,
                                           len(dictionary), knowledge.dim)
    torch.manual_seed(snakemake.params.seed)
    model = GeneCompassForPretraining(config)
    if config.knowledge_kinds:
        model.set_knowledge(knowledge)
    with atomic_output(snakemake.output.model) as tmp:
        model.save_pretrained(tmp)
