"""Rule grn_deletion: in-silico deletion of each TF; precision of the most shifted genes vs its targets."""

from genecompass.annotation.finetune import load_tokenized
from genecompass.dictionary import read_dictionary
from genecompass.embed import load_encoder
from genecompass.grn.task import deletion_table, read_grn_dataset, symbol_tokens
from genecompass.utils import atomic_output, logged_to

with logged_to(snakemake.log[0]):
    settings = snakemake.params.task.get("deletion", {})
    _, tfs, networks = read_grn_dataset(snakemake.input.dataset)
    network = next(iter(networks.values()))  # the dataset's first network
    encoder = load_encoder(snakemake.input.model, settings.get("device", "cpu"))
    table = deletion_table(encoder, load_tokenized(list(snakemake.input.shards)), tfs,
                           network,
                           symbol_tokens(read_dictionary(snakemake.input.dictionary), snakemake.params.species),
                           max_length=encoder.config.max_genes, k_values=tuple(settings.get("k", (10, 20, 50))),
                           min_targets=settings.get("min_targets", 5), max_cells=settings.get("max_cells", 200),
                           seed=snakemake.params.seed)
    table.insert(0, "variant", snakemake.wildcards.variant)
    summary = table.groupby("k")[["precision", "random_precision", "expected_random"]].mean()
    print(f"{table['tf'].nunique()} TFs; mean over TFs:\n{summary.round(4).to_string()}")
    with atomic_output(snakemake.output.table) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
