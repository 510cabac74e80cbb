"""What a configuration asks the workflow for: reference files and their downloads, promoter sources,
the species each knowledge kind has inputs for, the results the summary reads.

The rule files call these while Snakemake plans the DAG, so this module imports nothing heavy; the
unit tests reach the same logic here (``tests/test_plan.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from genecompass.downloads import download_target

# Keys of a network or promoter entry that describe the file rather than locate it.
DESCRIPTIVE_KEYS = ("name", "layout")
# The kinds of promoter source a species may have: each a set of keys that go together.
PROMOTER_SOURCES = (("fasta",), ("epd_sequences", "epd_ensembl"), ("genome", "gtf"))
KNOWLEDGE_KINDS = ("grn", "promoter", "family", "coexpression")
# File entries of task datasets that may be downloads ({url, sha256}).
TASK_FILE_KEYS = ("data", "go_gene_sets", "smiles", "gene_vectors", "truth")


def locator(entry):
    """The part of a config entry that says where its file is (a path, or {url, sha256[, path]})."""
    if isinstance(entry, Mapping):
        return {key: value for key, value in entry.items() if key not in DESCRIPTIVE_KEYS}
    return entry


def reference_file(entry, cache_dir) -> str:
    """The local file a config entry stands for: its path, or where its download goes in ``cache_dir``."""
    return download_target(locator(entry), cache_dir)


def reference_entries(node) -> Iterator[Mapping]:
    """Every file entry ({url, ...} or {path, ...}) under the config's ``references`` (lists and maps walked)."""
    if isinstance(node, Mapping) and ("url" in node or "path" in node):
        yield node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            if key != "cache_dir":
                yield from reference_entries(value)
    elif isinstance(node, list):
        for value in node:
            yield from reference_entries(value)


def downloads(config: Mapping, cache_dir) -> dict[str, dict]:
    """File name in ``cache_dir`` -> the entry to download it from: every reference, task-dataset and
    released-model file given as a URL whose local copy is not there."""
    task_files = [dataset[key]
                  for task in ("perturbation", "cpa", "deepce")
                  for dataset in ((config.get("tasks") or {}).get(task) or {}).get("datasets") or []
                  for key in TASK_FILE_KEYS if isinstance(dataset.get(key), Mapping)]
    released = released_source(config.get("model") or {}) or {}
    model_files = [entry for entry in [released.get("checkpoint"), released.get("token_dictionary"),
                                       *(released.get("medians") or {}).values()] if isinstance(entry, Mapping)]
    result = {}
    for entry in [*reference_entries(config["references"]), *task_files, *model_files]:
        target = reference_file(entry, cache_dir)
        if "url" in entry and Path(target).parent == Path(cache_dir):
            result[Path(target).name] = locator(entry)
    return result


def promoter_source(references: Mapping, species: str) -> dict | None:
    """The promoter source of a species (null-valued keys dropped), or None; exactly one kind of source.

    Config files layer by merging maps, so a real-data config that names EPDnew files must set the
    demo's ``fasta: null`` (and vice versa): two sources are an error.
    """
    entry = (references.get("promoters") or {}).get(species)
    entry = {key: value for key, value in (entry or {}).items() if value is not None}
    if not entry:
        return None
    kinds = [keys for keys in PROMOTER_SOURCES if any(key in entry for key in keys)]
    if len(kinds) != 1 or not all(key in entry for key in kinds[0]):
        named = " + ".join("/".join(keys) for keys in PROMOTER_SOURCES)
        raise ValueError(f"config: references.promoters.{species} has keys {sorted(entry)}; give exactly one "
                         f"source, one of {named} (set the others to null when a config file layers on another)")
    return entry


def knowledge_species(references: Mapping, kind: str, samples_by_species: Mapping[str, list]) -> list[str]:
    """The species for which knowledge ``kind`` has inputs in this configuration."""
    available = []
    for species in ("human", "mouse"):
        if kind == "grn" and (references.get("networks") or {}).get(species):
            available.append(species)
        elif kind == "family" and references.get("gene_groups"):
            available.append(species)
        elif kind == "coexpression" and samples_by_species.get(species):
            available.append(species)
        elif kind == "promoter" and promoter_source(references, species):
            available.append(species)
    return available


def summary_entries(task_targets: Mapping[str, list[str]], dosage_labels: str | None,
                    tasks: tuple[str, ...]) -> dict[str, list[dict]]:
    """Every downstream result the summary reads, as {task, dataset, path}, by task (in ``tasks`` order).

    ``task_targets``: each task's own target list (``results/tasks/<task>/<dataset>/...``), so that the
    summary and the tasks name the same files; ``dosage_labels``: the dosage task's label file, whose name
    names its one dataset.
    """
    results = {
        "annotation": task_targets.get("annotation", []),
        "came": task_targets.get("came", []),
        # results/tasks/grn/<dataset>/metrics.tsv, not the prior sweeps, deletions or ugrn tables
        "grn": [path for path in task_targets.get("grn", [])
                if len(Path(path).parts) == 5 and Path(path).name == "metrics.tsv"],
        "perturbation": task_targets.get("perturbation", []),
        "cpa": task_targets.get("cpa", []),
        "deepce": task_targets.get("deepce", []),
        # In-silico perturbation: the summary reads the dataset's folder.
        "insilico": sorted({str(Path(path).parent) for path in task_targets.get("insilico", [])}),
    }
    entries = {task: [{"task": task, "dataset": Path(path).parts[3], "path": path} for path in paths]
               for task, paths in results.items()}
    entries["dosage"] = [{"task": "dosage", "path": path, "dataset": Path(str(dosage_labels)).name.split(".")[0]}
                         for path in task_targets.get("dosage", [])]
    return {task: entries[task] for task in tasks if entries.get(task)}


# ---- models: which the tasks use, and the controls beside it

RELEASED_MODEL = "released"      # the name a released checkpoint (model.source) takes in results/
UNTRAINED_MODEL = "untrained"
EXPORT_FOLDER = "results/model/{variant}/released"   # a variant exported in the released layout
RELEASED_DICTIONARY_FILES = ("human_mouse_tokens.pickle", "human_gene_median_after_filter.pickle",
                             "mouse_gene_median_after_filter.pickle")   # genecompass.released writes them


def released_source(model_section: Mapping) -> dict | None:
    """The released checkpoint entry of ``model.source`` (checkpoint, token_dictionary, medians), or None."""
    source = model_section.get("source")
    return dict(source) if isinstance(source, Mapping) else None


def exported_variant(model_section: Mapping) -> str | None:
    """The variant whose own export (``EXPORT_FOLDER``) a released source names, else None.

    Its runs would repeat the imported copy's (the workflow test checks that the two give the
    same embeddings), so the imported copy stands for both.
    """
    source = released_source(model_section)
    checkpoint = source and source.get("checkpoint")
    if isinstance(checkpoint, str):
        parts = Path(checkpoint).parts
        if len(parts) == 4 and parts[:2] == ("results", "model") and parts[3] == "released" \
                and parts[2] in (model_section.get("variants") or {}):
            return parts[2]
    return None


def source_model(model_section: Mapping) -> str:
    """The model every task uses: a variant (``model.source`` a name, or null: the first) or ``released``."""
    variants = list(model_section["variants"])
    source = model_section.get("source")
    if source is None:
        return variants[0]
    if isinstance(source, Mapping):
        return RELEASED_MODEL
    if source not in variants:
        raise ValueError(f"config: model.source '{source}' is not a variant of model.variants ({variants}); "
                         "name one of them, or give a released checkpoint as {checkpoint, token_dictionary, medians}")
    return source


def control_models(model_section: Mapping) -> list[str]:
    """Models every task runs on beside the source: ``model.controls``, by default every pretrained variant
    but the source (and the variant a released source was exported from), then the untrained model."""
    variants = list(model_section["variants"])
    source = source_model(model_section)
    if model_section.get("controls") is not None:
        controls = list(model_section["controls"])
        unknown = [c for c in controls if c not in variants and c != UNTRAINED_MODEL]
        if unknown or source in controls:
            raise ValueError(f"config: model.controls {controls}: each must be a variant of model.variants "
                             f"({variants}) or '{UNTRAINED_MODEL}', and not the source '{source}'")
        return controls
    skip = {source, exported_variant(model_section)}
    return [v for v in variants if v not in skip] + [UNTRAINED_MODEL]


def task_models(model_section: Mapping) -> list[str]:
    """The source model, then its controls."""
    return [source_model(model_section), *control_models(model_section)]


def method_name(method: str, model: str, model_section: Mapping) -> str:
    """A task's method run on ``model``: its own name on the source, ``<method>_<model>`` on a control."""
    return method if model == source_model(model_section) else f"{method}_{model}"


def method_model(method: str, base_methods, model_section: Mapping) -> tuple[str, str]:
    """(base method, model) of a method name of :func:`method_name` (e.g. ``genecompass_came_untrained``)."""
    if method in base_methods:
        return method, source_model(model_section)
    for model in control_models(model_section):
        base = method[:-len(model) - 1]
        if method.endswith(f"_{model}") and base in base_methods:
            return base, model
    raise ValueError(f"method '{method}' is none of {list(base_methods)} on the models {task_models(model_section)}")
