"""Rule grn_ugrn: universal GRN features (embedding, VVP, GDT) of one frozen model, leave-one-dataset-out."""

from pathlib import Path

from genecompass.dictionary import read_dictionary
from genecompass.grn.task import read_grn_dataset, symbol_tokens, ugrn_pairs, ugrn_table
from genecompass.grn.ugrn import load_pretraining_model
from genecompass.utils import atomic_output, logged_to

with logged_to(snakemake.log[0]):
    settings = snakemake.params.task.get("ugrn", {})
    seed = snakemake.params.seed
    dictionary = read_dictionary(snakemake.input.dictionary)
    model = load_pretraining_model(snakemake.input.model, settings.get("device", "cpu"))
    datasets = {}
    for folder in map(Path, snakemake.input.datasets):
        name = folder.parent.name
        species = snakemake.params.species[name]
        expression, tfs, networks = read_grn_dataset(folder)
        # the dataset's training / evaluation GRN: ugrn.network[name], else its first network
        network_name = (settings.get("network") or {}).get(name, next(iter(networks)))
        tokens = symbol_tokens(dictionary, species)
        pairs = ugrn_pairs(expression, networks[network_name], tfs, tokens, settings.get("max_positive_pairs"), seed)
        genes = [tokens[g] for g in expression.index if g in tokens]
        print(f"{name} ({species}, {network_name}): {len(genes)} genes with tokens, "
              f"{int(pairs['label'].sum())} positive and {int((pairs['label'] == 0).sum())} negative pairs")
        datasets[name] = {"pairs": pairs, "genes": genes, "species": species}
    table = ugrn_table(model, datasets, kind=settings.get("translator", "logistic"), seed=seed,
                       window=settings.get("window"))
    table.insert(0, "variant", snakemake.wildcards.variant)
    print(table.round(3).to_string(index=False))
    with atomic_output(snakemake.output.table) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
