# Helpers for every rules file: the sample sheet, reference files, task entries and model paths.
# Each stage's and each task's own input functions sit in rules/<name>_functions.smk, beside its
# rules (Snakemake's linter wants functions and rules in separate files); logic that tests should
# reach lives in the library (genecompass.plan).

import json
import re
import shlex
import sys
from pathlib import Path

from genecompass import plan
from genecompass.tasks import TASKS
from genecompass.tasks.annotation import methods as annotation_methods
from genecompass.tasks.came import methods as came_methods
from genecompass.tasks.cpa import methods as cpa_methods
from genecompass.tasks.deepce import methods as deepce_methods
from genecompass.tasks.dosage import methods as dosage_methods
from genecompass.tasks.grn import methods as grn_methods
from genecompass.tasks.insilico import methods as insilico_methods
from genecompass.tasks.perturbation import methods as perturbation_methods

# ---- samples

# The sheet's rows as plain dicts, built once: input functions run once per job, and a pandas
# look-up per job is most of the planning time of a large sheet (bench/bench_dag.py).
SAMPLE_ROWS = samples.to_dict("index")


def sample_row(wildcards):
    row = SAMPLE_ROWS.get(wildcards.sample)
    if row is None:
        raise ValueError(
            f"sample '{wildcards.sample}' is not in the sample sheet {config['samples']} "
            f"(it has {len(samples)} samples, e.g. {list(samples.index[:5])})"
        )
    return row


def sample_species(wildcards):
    return sample_row(wildcards)["species"]


def sample_counts(wildcards):
    return sample_row(wildcards)["path"]


def sample_gene_table(wildcards):
    return f"results/references/{sample_species(wildcards)}_genes.tsv"


def sample_hgnc(wildcards):
    """HGNC's IDs settle human symbols that the gene table lists under several IDs; its previous
    and alias symbols map renamed genes."""
    if sample_species(wildcards) == "human" and config["references"].get("gene_groups"):
        return [reference_file(config["references"]["gene_groups"])]
    return []


# Built once: input functions run once per job, and a scan of the sheet per job makes planning
# quadratic in the number of samples (bench/bench_dag.py).
SAMPLES_BY_SPECIES = {species: list(group.index) for species, group in samples.groupby("species", sort=False)}


def species_samples(species):
    return SAMPLES_BY_SPECIES.get(species, [])


def qc_outputs(kind):
    suffix = {"h5ad": ".h5ad", "filters": ".filters.tsv"}[kind]
    return [f"results/qc/{sample}{suffix}" for sample in samples.index]


def token_outputs(kind):
    suffix = {"histogram": ("histograms", ".npz"), "shard": ("shards", ".arrow")}[kind]
    return [f"results/tokens/{suffix[0]}/{sample}{suffix[1]}" for sample in samples.index]


# ---- reference files: a config entry is a local path or {url, sha256[, path]}

REFERENCE_CACHE = config["references"].get("cache_dir", "resources/downloads")


def reference_file(entry):
    """Local file of a reference entry: the path itself, or the download target."""
    return plan.reference_file(entry, REFERENCE_CACHE)


def network_entries(species):
    return config["references"]["networks"].get(species) or []


# ---- task entries


def task_entries(task, key="datasets", sample_keys=()):
    """config tasks.<task>.<key> (a list of named entries) by name, their samples checked against the sheet."""
    entries = {}
    for entry in ((config.get("tasks") or {}).get(task) or {}).get(key) or []:
        unknown = [s for k in sample_keys for s in entry.get(k) or [] if s not in SAMPLE_ROWS]
        if unknown:
            raise ValueError(
                f"{config['samples']}: tasks.{task}.{key} '{entry['name']}' names samples {unknown} "
                f"that the sample sheet lacks. Fix: use sample names of the sheet "
                f"({list(samples.index)}) or drop the entry."
            )
        entries[entry["name"]] = entry
    return entries


def task_entry(task, name, key="datasets", sample_keys=()):
    """The entry ``name`` of config tasks.<task>.<key>, or a clear error listing the entries there are."""
    entries = task_entries(task, key, sample_keys)
    if name not in entries:
        raise ValueError(f"tasks.{task}.{key} has no {key.rstrip('s')} '{name}' (it has {list(entries)})")
    return entries[name]


# ---- models


def pretrained_variants():
    """Model variants pretrained side by side (config model.variants); the first is the main one."""
    return list(config["model"]["variants"])


def main_variant():
    return pretrained_variants()[0]


def analysis_variants():
    """Variants compared in the gene-embedding analysis: every pretrained one and the untrained model.
    (A release keeps separate human and mouse tokens, so the analysis' shared-token pairs do not exist there.)"""
    return [*pretrained_variants(), plan.UNTRAINED_MODEL]


def source_model():
    """The model the tasks use (config model.source): a pretrained variant, or `released`."""
    return plan.source_model(config["model"])


def task_models():
    """The source model, then the controls every task also runs on."""
    return plan.task_models(config["model"])


def released_source():
    return plan.released_source(config["model"])


def task_methods(methods, skip_models=()):
    """A task's method names (its ``methods`` module): every method, then its MODEL_METHODS on each
    control model (``<method>_<model>``), but on ``skip_models``."""
    names = list(methods.METHODS)
    for model in task_models()[1:]:
        if model not in skip_models:
            names += [plan.method_name(method, model, config["model"]) for method in methods.MODEL_METHODS]
    return names


def method_model(methods, method):
    """(base method, model) of one of :func:`task_methods`'s names."""
    return plan.method_model(method, methods.METHODS, config["model"])


def model_dir(model):
    return f"results/model/{model}/model"


def model_dictionary(model):
    """The token dictionary a model reads: the released one for a released checkpoint, else ours."""
    return "results/model/released/dictionary.tsv" if model == plan.RELEASED_MODEL else "results/tokens/dictionary.tsv"


def model_shards(model, sample_names):
    """The samples' tokens in the model's own dictionary and scheme."""
    folder = "results/model/released/tokens" if model == plan.RELEASED_MODEL else "results/tokens/shards"
    return [f"{folder}/{sample}.arrow" for sample in sample_names]


def embedding_inputs(model):
    return {
        "contextual": f"results/embeddings/{model}/genes_contextual.tsv.gz",
        "static": f"results/embeddings/{model}/genes_static.tsv.gz",
    }
