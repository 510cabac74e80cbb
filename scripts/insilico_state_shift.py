"""Rule insilico_state_shift: a target state's drivers overexpressed in source cells vs random gene sets,
and the source's own drivers knocked down by each factor."""

from genecompass.embed import load_encoder
from genecompass.insilico.analysis import plot_state_shift
from genecompass.insilico.task import load_state_data, state_shift_experiment
from genecompass.utils import atomic_output, logged_to, write_json

with logged_to(snakemake.log[0]):
    task, entry, seed = snakemake.params.task, snakemake.params.entry, snakemake.params.seed
    data = load_state_data(entry, snakemake.input, task.get("max_cells", 200), seed)
    target = entry["targets"][0]
    if not data.drivers.get(target):
        raise SystemExit(f"tasks.insilico.datasets[{entry['name']}].drivers: no driver genes with a token for the "
                         f"target state '{target}' (states with drivers: {sorted(data.drivers)})")
    drivers = data.drivers[target]
    encoder = load_encoder(snakemake.input.model, task.get("device", "cpu"))
    per_cell, summary, knockdown = state_shift_experiment(
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
    with atomic_output(snakemake.output.cells) as tmp:
        per_cell.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    with atomic_output(snakemake.output.knockout) as tmp:
        knockdown.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    write_json(summary, snakemake.output.summary)
    plot_state_shift(per_cell, snakemake.output.figure,
                     title=f"{entry['source']} + {'/'.join(summary['drivers'])} -> {target}")
