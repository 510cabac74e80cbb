"""Rule insilico_candidates: every candidate gene overexpressed alone in source cells, ranked by its shift
towards each target state and away from the source."""

import pandas as pd

from genecompass.embed import load_encoder
from genecompass.insilico.analysis import plot_candidates
from genecompass.insilico.gene_sets import tokens_of
from genecompass.insilico.task import (
    candidate_experiment,
    load_state_data,
    targets_by_tf,
)
from genecompass.utils import atomic_output, logged_to, write_json

with logged_to(snakemake.log[0]):
    task, entry, seed = snakemake.params.task, snakemake.params.entry, snakemake.params.seed
    data = load_state_data(entry, snakemake.input, task.get("max_cells", 200), seed)
    if entry.get("candidates"):
        candidates = sorted(set(tokens_of(entry["candidates"], data.lookup).values()))
    else:  # every TF of the GRN knowledge
        candidates = sorted(targets_by_tf(pd.read_csv(snakemake.input.network, sep="\t", dtype=str), data.lookup))
    encoder = load_encoder(snakemake.input.model, task.get("device", "cpu"))
    top_k, level = task.get("top_k", 10), task.get("level", "median")
    ranking, shared = candidate_experiment(encoder, data.dataset, data.source, data.targets, candidates, level=level,
                                           top_k=top_k, batch_size=task.get("batch_size", 64),
                                           pooling=task.get("pooling", "mean"), progress=True)
    ranking.insert(1, "gene", [data.names.get(int(t), str(t)) for t in ranking["token_id"]])
    ranking["driver_of"] = [",".join(s for s, tokens in data.drivers.items() if int(t) in tokens)
                            for t in ranking["token_id"]]
    summary = {"source": entry["source"], "targets": entry["targets"], "n_candidates": len(ranking),
               "top_k": top_k, "level": level,
               "top": {name: ranking.sort_values(f"rank_{name}")["gene"].head(top_k).tolist()
                       for name in entry["targets"]},
               "top_in_every_target": [data.names.get(int(t), str(t)) for t in shared]}
    print(summary)
    with atomic_output(snakemake.output.ranking) as tmp:
        ranking.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    write_json(summary, snakemake.output.summary)
    plot_candidates(ranking.set_index("gene", drop=False), snakemake.output.figure, top_k=top_k,
                    title=f"{entry['source']} -> {' & '.join(entry['targets'])}")
