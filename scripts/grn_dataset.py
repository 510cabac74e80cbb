"""Rule grn_dataset: one GRN dataset as a BEELINE folder (expression, TF list, ground-truth networks)."""

import anndata as ad

from genecompass.grn.beeline import read_expression, write_beeline_dataset
from genecompass.grn.task import export_expression, read_tfs, read_truth_network
from genecompass.utils import logged_to

with logged_to(snakemake.log[0]):
    entry = snakemake.params.dataset
    networks = {name: read_truth_network(path) for name, path in entry["networks"].items()}
    if entry.get("tfs"):
        tfs = read_tfs(snakemake.input.tfs, entry.get("tf_column", "TF"))
    else:  # no TF list: the networks' regulators
        tfs = list(dict.fromkeys(tf for network in networks.values() for tf in network["Gene1"]))
    if entry.get("samples"):
        adata = ad.concat([ad.read_h5ad(path) for path in snakemake.input.h5ad], join="inner", merge="first",
                          index_unique="/", keys=entry["samples"])
        expression = export_expression(adata, tfs, entry.get("n_variable_genes", 500),
                                       entry.get("min_cell_fraction", 0.1))
    else:
        expression = read_expression(snakemake.input.expression)
        expression.index = expression.index.str.upper()
    genes = set(expression.index)
    present = [tf for tf in tfs if tf in genes]
    print(f"{entry['name']}: {expression.shape[0]} genes x {expression.shape[1]} cells, {len(present)} TFs")
    for name, network in networks.items():
        inside = network["Gene1"].isin(present) & network["Gene2"].isin(genes)
        print(f"network {name}: {len(network)} edges, {int(inside.sum())} between a listed TF and a dataset gene")
    write_beeline_dataset(snakemake.output[0], expression, networks, tfs=present)
