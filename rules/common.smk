# Input functions and target lists; no rules here.

import json
import re
import shlex
import sys
from pathlib import Path

from genecompass.downloads import download_target
from genecompass.tasks import TASKS as SUMMARY_TASKS
from genecompass.tasks.annotation import methods as annotation_methods
from genecompass.tasks.came import methods as came_methods
from genecompass.tasks.cpa import methods as cpa_methods
from genecompass.tasks.deepce import methods as deepce_methods
from genecompass.tasks.dosage import methods as dosage_methods
from genecompass.tasks.grn import methods as grn_methods
from genecompass.tasks.insilico import methods as insilico_methods
from genecompass.tasks.perturbation import methods as perturbation_methods

SIMULATE_DIR = config["simulate"]["outdir"]


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
    """HGNC's IDs settle human symbols that the gene table lists under several IDs."""
    if sample_species(wildcards) == "human" and config["references"].get("gene_groups"):
        return [reference_file(config["references"]["gene_groups"])]
    return []


def species_gene_table_source(wildcards):
    return reference_file(config["references"][f"{wildcards.species}_genes"])


def qc_outputs(kind):
    suffix = {"h5ad": ".h5ad", "filters": ".filters.tsv"}[kind]
    return [f"results/qc/{sample}{suffix}" for sample in samples.index]


def token_outputs(kind):
    suffix = {"histogram": ("histograms", ".npz"), "shard": ("shards", ".arrow")}[kind]
    return [f"results/tokens/{suffix[0]}/{sample}{suffix[1]}" for sample in samples.index]


def all_targets():
    return [
        "results/qc/summary.tsv",
        "results/tokens/dictionary_summary.json",
        "results/tokens/medians.tsv",
        "results/corpus/summary.json",
        "results/knowledge/knowledge.safetensors",
        *[f"results/model/{variant}/summary.json" for variant in pretrained_variants()],
        *[f"results/embeddings/{main_variant()}/cells/{sample}.h5ad" for sample in samples.index],
        "results/analysis/gene_embeddings/summary.tsv",
        *came_targets(),
        *annotation_targets(),
        *grn_targets(),
        *perturbation_targets(),
        *cpa_targets(),
        *deepce_targets(),
        *dosage_targets(),
        *insilico_targets(),
        *summary_targets(),
    ]


# ---- tasks ----


def task_entries(task, key, sample_keys):
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


def came_pairs():
    return task_entries("came", "pairs", ("reference", "query"))


def came_pair(name):
    pairs = came_pairs()
    if name not in pairs:
        raise ValueError(f"tasks.came.pairs has no pair '{name}' (it has {list(pairs)})")
    return pairs[name]


def pair_species(name, side):
    """The one species of a pair's reference or query samples."""
    found = {SAMPLE_ROWS[sample]["species"] for sample in came_pair(name)[side]}
    if len(found) != 1:
        raise ValueError(
            f"tasks.came.pairs.{name}.{side}: samples of species {sorted(found)}; "
            "use samples of one species per side"
        )
    return found.pop()


def came_inputs(wildcards):
    pair = came_pair(wildcards.pair)
    inputs = {
        "reference": [f"results/qc/{s}.h5ad" for s in pair["reference"]],
        "query": [f"results/qc/{s}.h5ad" for s in pair["query"]],
    }
    if came_methods.method_uses_genecompass(wildcards.method):
        variant = config["tasks"]["came"].get("embedding_variant") or main_variant()
        inputs["contextual"] = f"results/embeddings/{variant}/genes_contextual.tsv.gz"
        inputs["static"] = f"results/embeddings/{variant}/genes_static.tsv.gz"
    return inputs


def came_targets():
    return [
        f"results/tasks/came/{pair}/{method}/metrics.json" for pair in came_pairs() for method in came_methods.METHODS
    ]


def perturbation_datasets():
    return task_datasets("perturbation")


def perturbation_dataset(name):
    return task_dataset("perturbation", name)


PERTURBATION_METHODS = list(perturbation_methods.METHODS)


def perturbation_method_inputs(wildcards):
    entry = perturbation_dataset(wildcards.dataset)
    inputs = {
        "prepared": f"results/tasks/perturbation/{wildcards.dataset}/prepared/cells.h5ad",
        "go": reference_file(entry["go_gene_sets"]),
    }
    if perturbation_methods.method_uses_genecompass(wildcards.method):
        inputs.update(genecompass_embedding_inputs("perturbation"))
    return inputs


def perturbation_targets():
    return [f"results/tasks/perturbation/{name}/metrics.tsv" for name in perturbation_datasets()]


def task_datasets(task):
    """config tasks.<task>.datasets by name."""
    return {entry["name"]: entry for entry in (config["tasks"].get(task) or {}).get("datasets") or []}


def task_dataset(task, name):
    datasets = task_datasets(task)
    if name not in datasets:
        raise ValueError(f"tasks.{task}.datasets has no dataset '{name}' (it has {list(datasets)})")
    return datasets[name]


def genecompass_embedding_inputs(task):
    variant = config["tasks"][task].get("embedding_variant") or main_variant()
    return {
        "contextual": f"results/embeddings/{variant}/genes_contextual.tsv.gz",
        "static": f"results/embeddings/{variant}/genes_static.tsv.gz",
    }


CPA_METHODS = list(cpa_methods.METHODS)
DEEPCE_METHODS = list(deepce_methods.METHODS)


def cpa_dataset(name):
    return task_dataset("cpa", name)


def cpa_method_inputs(wildcards):
    entry = cpa_dataset(wildcards.dataset)
    inputs = {"prepared": f"results/tasks/cpa/{wildcards.dataset}/prepared/samples.h5ad"}
    if entry.get("smiles"):
        inputs["smiles"] = reference_file(entry["smiles"])
    if cpa_methods.method_uses_genecompass(wildcards.method):
        inputs.update(genecompass_embedding_inputs("cpa"))
    return inputs


def cpa_evaluate_inputs(wildcards):
    entry = cpa_dataset(wildcards.dataset)
    base = f"results/tasks/cpa/{wildcards.dataset}"
    inputs = {
        "prepared": f"{base}/prepared/samples.h5ad",
        "predictions": [f"{base}/{method}/predictions.h5ad" for method in CPA_METHODS],
        "curves": [f"{base}/{method}/dose_response.tsv" for method in CPA_METHODS],
    }
    if entry.get("truth"):
        inputs["truth"] = reference_file(entry["truth"])
    return inputs


def cpa_targets():
    return [f"results/tasks/cpa/{name}/metrics.tsv" for name in task_datasets("cpa")]


def deepce_dataset(name):
    return task_dataset("deepce", name)


def deepce_method_inputs(wildcards):
    entry = deepce_dataset(wildcards.dataset)
    inputs = {"prepared": f"results/tasks/deepce/{wildcards.dataset}/prepared/signatures.h5ad"}
    if deepce_methods.method_uses_genecompass(wildcards.method):
        inputs.update(genecompass_embedding_inputs("deepce"))
    elif wildcards.method == "deepce":
        inputs["gene_vectors"] = reference_file(entry["gene_vectors"])
    return inputs


def deepce_targets():
    return [f"results/tasks/deepce/{name}/metrics.tsv" for name in task_datasets("deepce")]


DOSAGE_FINETUNE_METHODS = dosage_methods.FINETUNE_METHODS
DOSAGE_METHODS = dosage_methods.METHODS


def dosage_task():
    return config["tasks"].get("dosage") or {}


def dosage_shards():
    chosen = dosage_task().get("samples") or list(samples.index)
    return [f"results/tokens/shards/{sample}.arrow" for sample in chosen]


def dosage_targets():
    return ["results/tasks/dosage/metrics.tsv"] if dosage_task().get("labels") else []


def insilico_task():
    return config["tasks"].get("insilico") or {}


def insilico_dataset(name):
    return task_dataset("insilico", name)


def insilico_variant():
    return insilico_task().get("variant") or main_variant()


def insilico_inputs(wildcards):
    entry = insilico_dataset(wildcards.dataset)
    return {
        "shards": [f"results/tokens/shards/{sample}.arrow" for sample in entry["samples"]],
        "qc": [f"results/qc/{sample}.h5ad" for sample in entry["samples"]],
        "model": f"results/model/{insilico_variant()}/model",
        "dictionary": "results/tokens/dictionary.tsv",
        "network": f"results/knowledge/inputs/grn_{entry['species']}.tsv",
        "housekeeping": reference_file(entry["housekeeping"]),
        # drivers: a state -> genes mapping in the config, or a file (a path or a download locator)
        **({} if insilico_methods.drivers_in_config(entry) else {"drivers": reference_file(entry["drivers"])}),
    }


INSILICO_OUTPUTS = insilico_methods.OUTPUTS


def insilico_targets():
    return [
        f"results/tasks/insilico/{name}/{output}" for name in task_datasets("insilico") for output in INSILICO_OUTPUTS
    ]


# ---- summary and report ----


def summary_entries():
    """Every downstream result the summary reads, as {task, dataset, path}, by task: the tasks'
    own target lists (results/tasks/<task>/<dataset>/...), so both name the same files."""
    results = {
        "annotation": annotation_targets(),
        "came": came_targets(),
        # results/tasks/grn/<dataset>/metrics.tsv, not the prior sweeps, deletions or ugrn tables
        "grn": [path for path in grn_targets() if len(Path(path).parts) == 5 and Path(path).name == "metrics.tsv"],
        "perturbation": perturbation_targets(),
        "cpa": cpa_targets(),
        "deepce": deepce_targets(),
        # In-silico perturbation: the summary reads the dataset's folder.
        "insilico": sorted({str(Path(path).parent) for path in insilico_targets()}),
    }
    entries = {
        task: [{"task": task, "dataset": Path(path).parts[3], "path": path} for path in paths]
        for task, paths in results.items()
    }
    # The dosage task has one label set; it is named after the label file.
    entries["dosage"] = [
        {
            "task": "dosage",
            "path": path,
            "dataset": Path(str(reference_file(dosage_task()["labels"]))).name.split(".")[0],
        }
        for path in dosage_targets()
    ]
    return {task: entries[task] for task in SUMMARY_TASKS if entries.get(task)}


def summary_task_entries(task):
    entries = summary_entries()
    if task not in entries:
        raise ValueError(f"no results of task '{task}' in this config (tasks with results: {sorted(entries)})")
    return entries[task]


def summary_task_inputs(wildcards):
    if wildcards.task == "insilico":
        return [
            f"{entry['path']}/{output}" for entry in summary_task_entries("insilico") for output in INSILICO_OUTPUTS
        ]
    return [entry["path"] for entry in summary_task_entries(wildcards.task)]


def summary_targets():
    return [
        "results/summary/summary.tsv",
        *[f"results/summary/{task}.png" for task in summary_entries()],
        "results/summary/qc.png",
        "results/summary/pretraining.png",
    ]


def summary_controls():
    """Name parts of the ablated methods: the model variants besides the main one."""
    return pretrained_variants()[1:]


# ---- model ----


def pretrained_variants():
    """Model variants pretrained side by side (config model.variants); the first is the main one."""
    return list(config["model"]["variants"])


def main_variant():
    return pretrained_variants()[0]


def analysis_variants():
    """Variants compared in the gene-embedding analysis: every pretrained one and the untrained model."""
    return [*pretrained_variants(), "untrained"]


def shell_json(value):
    """A config section as one shell-quoted JSON argument."""
    return shlex.quote(json.dumps(value, sort_keys=True))


def rule_python():
    """The Python of a shell rule: its conda env's under --use-conda, else the one running Snakemake."""
    from snakemake.settings.types import DeploymentMethod

    settings = getattr(workflow, "deployment_settings", None)
    if settings is not None and DeploymentMethod.CONDA in settings.deployment_method:
        return "python"
    return shlex.quote(sys.executable)


def pretrain_nodes():
    return int(config["pretrain"].get("nodes", 1))


def pretrain_launcher(wildcards, resources):
    """How the pretraining script starts.

    One node: one process, or with several GPUs torchrun (torch.distributed.run) with one process
    per GPU of ``resources.gpu``. Several nodes (pretrain.nodes > 1, inside a SLURM job over those
    nodes): srun starts one torchrun per node; they meet at a c10d rendezvous on the job's first node,
    and the node count comes from SLURM_NNODES, the processes per node from pretrain.gpus (1 on CPU).
    """
    nodes = int(resources.nodes)
    if nodes > 1:
        per_node = max(1, int(config["pretrain"]["gpus"]))
        port = int(config["pretrain"].get("rendezvous_port", 29500))
        return (
            ': "${SLURM_JOB_ID:?pretrain.nodes > 1 runs inside a SLURM job: use the slurm profile}" && '
            'srun --ntasks-per-node 1 --ntasks "$SLURM_NNODES" --kill-on-bad-exit=1 '
            f'{rule_python()} -m torch.distributed.run --nnodes "$SLURM_NNODES" --nproc-per-node {per_node} '
            '--rdzv-backend c10d --rdzv-id "$SLURM_JOB_ID" '
            f'--rdzv-endpoint "$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1):{port}"'
        )
    gpus = int(resources.gpu)
    if gpus > 1:
        return f"{rule_python()} -m torch.distributed.run --standalone --nnodes 1 --nproc-per-node {gpus}"
    return rule_python()


def gene_sum_inputs(wildcards):
    return {
        f"sample_{sample}": f"results/embeddings/{wildcards.variant}/samples/{sample}.npz" for sample in samples.index
    }


def embedding_analysis_inputs(wildcards):
    inputs = {}
    for variant in analysis_variants():
        inputs[f"contextual_{variant}"] = f"results/embeddings/{variant}/genes_contextual.tsv.gz"
        for sample in samples.index:
            inputs[f"sample_{variant}_{sample}"] = f"results/embeddings/{variant}/samples/{sample}.npz"
    return inputs


# ---- references: a config entry is a local path or {url, sha256[, path]} ----

REFERENCE_CACHE = config["references"].get("cache_dir", "resources/downloads")
# Keys of a network or promoter entry that describe it rather than locate it.
DESCRIPTIVE_KEYS = ("name", "layout")


def locator(entry):
    """The part of a config entry that says where its file is."""
    if isinstance(entry, dict):
        return {k: v for k, v in entry.items() if k not in DESCRIPTIVE_KEYS}
    return entry


def reference_file(entry):
    """Local file of a reference entry: the path itself, or the download target."""
    return download_target(locator(entry), REFERENCE_CACHE)


def iter_reference_entries(node=...):
    """Every reference entry under config['references'] (nested lists/maps walked)."""
    node = config["references"] if node is ... else node
    if isinstance(node, dict) and ("url" in node or "path" in node):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            if key != "cache_dir":
                yield from iter_reference_entries(value)
    elif isinstance(node, list):
        for value in node:
            yield from iter_reference_entries(value)


def downloads():
    """File name in the cache -> the entry to download it from."""
    result = {}
    task_files = [
        dataset[key]
        for task in ("perturbation", "cpa", "deepce")
        for dataset in task_datasets(task).values()
        for key in ("data", "go_gene_sets", "smiles", "gene_vectors", "truth")
        if isinstance(dataset.get(key), dict)
    ]
    for entry in [*iter_reference_entries(), *task_files]:
        target = reference_file(entry)
        if "url" in entry and Path(target).parent == Path(REFERENCE_CACHE):
            result[Path(target).name] = locator(entry)
    return result


def download_params(wildcards):
    return downloads()[wildcards.filename]


def network_entries(species):
    return config["references"]["networks"].get(species) or []


def network_files(wildcards):
    return [reference_file(entry) for entry in network_entries(wildcards.species)]


def network_specs(wildcards):
    """(name, layout) of each network file, in the order of network_files."""
    specs = []
    for entry in network_entries(wildcards.species):
        entry = entry if isinstance(entry, dict) else {}
        specs.append({"name": entry.get("name"), "layout": entry.get("layout")})
    return specs


PROMOTER_SOURCES = (("fasta",), ("epd_sequences", "epd_ensembl"), ("genome", "gtf"))


def promoter_entry(species):
    """The promoter source of a species, null-valued keys dropped; exactly one kind of source.

    Config files layer by merging maps, so a real-data config that names EPDnew files
    must set the demo's ``fasta: null`` (and vice versa): two sources are an error.
    """
    entry = (config["references"].get("promoters") or {}).get(species)
    entry = {key: value for key, value in (entry or {}).items() if value is not None}
    if not entry:
        return None
    kinds = [keys for keys in PROMOTER_SOURCES if any(key in entry for key in keys)]
    if len(kinds) != 1 or not all(key in entry for key in kinds[0]):
        named = " + ".join("/".join(keys) for keys in PROMOTER_SOURCES)
        raise ValueError(
            f"config: references.promoters.{species} has keys {sorted(entry)}; give exactly one source, "
            f"one of {named} (set the others to null when a config file layers on another)"
        )
    return entry


def promoter_inputs(wildcards):
    entry = promoter_entry(wildcards.species) or {}
    return {key: reference_file(value) for key, value in entry.items()}


# ---- knowledge ----

KNOWLEDGE_KINDS = ("grn", "promoter", "family", "coexpression")


# Built once: input functions run once per job, and a scan of the sheet per job makes planning
# quadratic in the number of samples (bench/bench_dag.py).
SAMPLES_BY_SPECIES = {species: list(group.index) for species, group in samples.groupby("species", sort=False)}


def species_samples(species):
    return SAMPLES_BY_SPECIES.get(species, [])


def hgnc_for_species(wildcards):
    """HGNC IDs resolve human symbols listed under several Ensembl IDs."""
    if wildcards.species == "human" and config["references"].get("gene_groups"):
        return [reference_file(config["references"]["gene_groups"])]
    return []


def knowledge_species(kind):
    """Species for which a knowledge type has inputs in this configuration."""
    references = config["references"]
    available = []
    for species in ("human", "mouse"):
        if kind == "grn" and network_entries(species):
            available.append(species)
        elif kind == "family" and references.get("gene_groups"):
            available.append(species)
        elif kind == "coexpression" and species_samples(species):
            available.append(species)
        elif kind == "promoter" and promoter_entry(species):
            available.append(species)
    return available


def knowledge_pair_inputs(wildcards):
    if wildcards.kind == "grn":
        return [f"results/knowledge/inputs/grn_{wildcards.species}.tsv"]
    if wildcards.kind == "family":
        return [f"results/knowledge/inputs/families_{wildcards.species}.tsv"]
    return [f"results/knowledge/inputs/coexpression/{sample}.tsv" for sample in species_samples(wildcards.species)]


def knowledge_embedding_inputs(wildcards):
    """Named inputs {kind}_{species}: vectors, and their quality reports."""
    inputs = {}
    for kind in KNOWLEDGE_KINDS:
        for species in knowledge_species(kind):
            inputs[f"{kind}_{species}"] = f"results/knowledge/{kind}_{species}.safetensors"
            inputs[f"{kind}_{species}_quality"] = f"results/knowledge/{kind}_{species}.quality.json"
    return inputs


ANNOTATION_METHODS = annotation_methods.METHODS


def annotation_datasets():
    return task_entries("annotation", "datasets", ("samples",))


def annotation_dataset(name):
    datasets = annotation_datasets()
    if name not in datasets:
        raise ValueError(f"tasks.annotation.datasets has no dataset '{name}' (it has {list(datasets)})")
    return datasets[name]


def annotation_seeds(wildcards):
    """A dataset's own seeds, else tasks.annotation.seeds, else the workflow seed."""
    task = config["tasks"]["annotation"]
    seeds = annotation_dataset(wildcards.dataset).get("seeds") or task.get("seeds") or [config["seed"]]
    return [int(seed) for seed in seeds]


def annotation_inputs(wildcards):
    dataset = annotation_dataset(wildcards.dataset)
    inputs = {
        "shards": [f"results/tokens/shards/{s}.arrow" for s in dataset["samples"]],
        "h5ad": [f"results/qc/{s}.h5ad" for s in dataset["samples"]],
    }
    if annotation_methods.method_uses_model(wildcards.method):
        inputs["model"] = f"results/model/{main_variant()}/model"
    return inputs


def annotation_targets():
    return [
        f"results/tasks/annotation/{name}/{method}/metrics.json"
        for name in annotation_datasets()
        for method in ANNOTATION_METHODS
    ]


# ---- GRN inference ----


def grn_datasets():
    return task_entries("grn", "datasets", ("samples",))


def grn_dataset(name):
    datasets = grn_datasets()
    if name not in datasets:
        raise ValueError(f"tasks.grn.datasets has no dataset '{name}' (it has {list(datasets)})")
    entry = datasets[name]
    if bool(entry.get("samples")) == bool(entry.get("expression")):
        raise ValueError(
            f"tasks.grn.datasets '{name}': give either samples (QC'd samples of the sheet) or "
            "expression (a BEELINE ExpressionData.csv), not both or neither"
        )
    return entry


def grn_dataset_pattern():
    """Wildcard constraint of GRN dataset names (never matches when there are none)."""
    return "|".join(re.escape(name) for name in grn_datasets()) or "(?!x)x"


def grn_variants():
    """Embeddings whose GRN methods run: every pretrained variant and the untrained model."""
    return analysis_variants()


def grn_method_names():
    return grn_methods.methods(grn_variants())


def grn_dataset_inputs(wildcards):
    entry = grn_dataset(wildcards.dataset)
    inputs = {"networks": list(entry["networks"].values())}
    if entry.get("tfs"):
        inputs["tfs"] = entry["tfs"]
    if entry.get("samples"):
        inputs["h5ad"] = [f"results/qc/{s}.h5ad" for s in entry["samples"]]
    else:
        inputs["expression"] = entry["expression"]
    return inputs


def grn_infer_inputs(wildcards):
    inputs = {"dataset": f"results/tasks/grn/{wildcards.dataset}/input"}
    variant = grn_methods.method_variant(wildcards.method)
    if variant:
        inputs["contextual"] = f"results/embeddings/{variant}/genes_contextual.tsv.gz"
        inputs["static"] = f"results/embeddings/{variant}/genes_static.tsv.gz"
    if wildcards.method.startswith("deepsem_prior_"):
        inputs["deepsem"] = f"results/tasks/grn/{wildcards.dataset}/deepsem/rankedEdges.csv"
    return inputs


def grn_targets():
    return [
        path
        for name in grn_datasets()
        for path in (
            f"results/tasks/grn/{name}/metrics.tsv",
            *[f"results/tasks/grn/{name}/prior_sweep/{variant}.tsv" for variant in grn_variants()],
            *[
                f"results/tasks/grn/{name}/deletion/{variant}.tsv"
                for variant in grn_variants()
                if grn_dataset(name).get("samples")
            ],
        )
    ] + ([f"results/tasks/grn/ugrn/{variant}.tsv" for variant in grn_variants()] if len(grn_datasets()) > 1 else [])
