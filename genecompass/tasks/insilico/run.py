"""The in-silico perturbation task's rules, one function each: files in, files out (the experiments:
:mod:`.experiments`, their statistics and figures: :mod:`.analysis`)."""

from __future__ import annotations

import pandas as pd

from genecompass.errors import InputError
from genecompass.tasks.insilico import experiments


def deletion(entry: dict, task: dict, seed: int, model_dir, dictionary_path, shards, network_path, housekeeping_path,
             out_shifts, out_tests, out_figure) -> pd.DataFrame:
    """Rule ``insilico_deletion``: delete each TF of the dataset; the gene-embedding shifts of its known
    targets against housekeeping and all other genes (tables and figure)."""
    from genecompass.corpus import load_tokenized
    from genecompass.dictionary import read_dictionary
    from genecompass.embed import load_encoder
    from genecompass.gene_sets import gene_token_lookup, read_gene_list, token_names, tokens_of
    from genecompass.tasks.insilico.analysis import plot_deletion_shifts
    from genecompass.utils import atomic_output

    settings = task.get("deletion", {})
    dictionary = read_dictionary(dictionary_path)
    lookup = gene_token_lookup(dictionary, entry["species"])
    housekeeping = list(tokens_of(read_gene_list(housekeeping_path), lookup).values())
    network = pd.read_csv(network_path, sep="\t", dtype=str)
    encoder = load_encoder(model_dir, task.get("device", "cpu"))
    shifts, tests = experiments.deletion_experiment(
        encoder, load_tokenized(list(shards)), experiments.targets_by_tf(network, lookup), housekeeping,
        token_names(dictionary, entry["species"]), min_targets=settings.get("min_targets", 5),
        max_tfs=settings.get("max_tfs", 10), max_cells=settings.get("max_cells", 100), seed=seed)
    print(tests.round(4).to_string())
    with atomic_output(out_shifts) as tmp:
        shifts.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    with atomic_output(out_tests) as tmp:
        tests.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    plot_deletion_shifts(shifts, out_figure, title=f"{entry['name']}: TF deletion")
    return tests


def state_shift(entry: dict, task: dict, seed: int, model_dir, dictionary_path, shards, qc_files, drivers_file,
                out_cells, out_knockout, out_summary, out_figure) -> dict:
    """Rule ``insilico_state_shift``: the first target state's drivers overexpressed in source cells against
    random gene sets of the same size, and the source's own drivers knocked down by each factor."""
    from genecompass.embed import load_encoder
    from genecompass.tasks.insilico.analysis import plot_state_shift
    from genecompass.utils import atomic_output, write_json

    data = experiments.load_state_data(entry, dictionary_path, shards, qc_files, drivers_file,
                                       task.get("max_cells", 200), seed)
    target = entry["targets"][0]
    if not data.drivers.get(target):
        raise InputError(drivers_file, f"tasks.insilico.datasets '{entry['name']}' drivers",
                         f"no driver genes with a token for the target state '{target}' "
                         f"(states with drivers: {sorted(data.drivers)})",
                         "list the target state's driver genes by names the token dictionary knows")
    drivers = data.drivers[target]
    encoder = load_encoder(model_dir, task.get("device", "cpu"))
    per_cell, summary, knockdown = experiments.state_shift_experiment(
        encoder, data.dataset, data.source, data.targets[target], drivers,
        source_drivers=data.drivers.get(entry["source"], []),
        knockout_factors=task.get("knockout_factors", (0.5, 0.25, 0.0)), level=task.get("level", "median"),
        n_random=task.get("random_sets", 20), seed=seed, batch_size=task.get("batch_size", 64),
        pooling=task.get("pooling", "mean"), progress=True)
    summary = {"source": entry["source"], "target": target, "n_source_cells": len(data.source),
               "n_target_cells": len(data.targets[target]), "drivers": [data.names[t] for t in drivers],
               "level": task.get("level", "median"), **summary}
    print(summary)
    print(knockdown.round(4).to_string())
    with atomic_output(out_cells) as tmp:
        per_cell.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    with atomic_output(out_knockout) as tmp:
        knockdown.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    write_json(summary, out_summary)
    plot_state_shift(per_cell, out_figure, title=f"{entry['source']} + {'/'.join(summary['drivers'])} -> {target}")
    return summary


def candidates(entry: dict, task: dict, seed: int, model_dir, dictionary_path, shards, qc_files, drivers_file,
               network_path, out_ranking, out_summary, out_figure) -> dict:
    """Rule ``insilico_candidates``: every candidate gene (the entry's ``candidates``, else every TF of the
    GRN knowledge) overexpressed alone in source cells, ranked by its shift towards each target state and
    away from the source."""
    from genecompass.embed import load_encoder
    from genecompass.gene_sets import tokens_of
    from genecompass.tasks.insilico.analysis import plot_candidates
    from genecompass.utils import atomic_output, write_json

    data = experiments.load_state_data(entry, dictionary_path, shards, qc_files, drivers_file,
                                       task.get("max_cells", 200), seed)
    if entry.get("candidates"):
        chosen = sorted(set(tokens_of(entry["candidates"], data.lookup).values()))
    else:
        chosen = sorted(experiments.targets_by_tf(pd.read_csv(network_path, sep="\t", dtype=str), data.lookup))
    encoder = load_encoder(model_dir, task.get("device", "cpu"))
    top_k, level = task.get("top_k", 10), task.get("level", "median")
    ranking, shared = experiments.candidate_experiment(encoder, data.dataset, data.source, data.targets, chosen,
                                                       level=level, top_k=top_k, batch_size=task.get("batch_size", 64),
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
    with atomic_output(out_ranking) as tmp:
        ranking.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    write_json(summary, out_summary)
    plot_candidates(ranking.set_index("gene", drop=False), out_figure, top_k=top_k,
                    title=f"{entry['source']} -> {' & '.join(entry['targets'])}")
    return summary
