"""Static checks of the Snakemake wiring: lint, DAG, rule directives, env files."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, snakemake_command

# Import name -> conda package name, where they differ.
CONDA_NAMES = {
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "matplotlib": "matplotlib-base",
    "torch": "pytorch",
    "PIL": "pillow",
    "torch_geometric": "pytorch_geometric",
    "igraph": "python-igraph",
    "rdkit": "rdkit",
}
# Modules every script may use without the env listing them.
PROVIDED = {"snakemake", "genecompass"}
REQUIRED_DIRECTIVES = ("log", "benchmark", "threads", "resources", "conda")


def parse_rules() -> dict[str, dict]:
    """Rule name -> directive name -> raw text, from rules/*.smk and the Snakefile."""
    rules = {}
    for path in [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))]:
        current = None
        directive = None
        for line in path.read_text().splitlines():
            match = re.match(r"^rule (\w+):", line)
            if match:
                current = rules.setdefault(match.group(1), {"file": path.name})
                directive = None
                continue
            if current is None:
                continue
            if line and not line.startswith((" ", "\t", "#")):
                current = None
                continue
            match = re.match(r"^    (\w+):\s*(.*)$", line)
            if match:
                directive = match.group(1)
                current[directive] = match.group(2)
            elif directive and line.strip():
                current[directive] = (current[directive] + " " + line.strip()).strip()
    return rules


def optional_imports(tree) -> set[int]:
    """ids of import nodes inside ``try: ... except ImportError``: optional dependencies."""
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(handler.type, ast.Name) and handler.type.id in ("ImportError", "ModuleNotFoundError")
                for handler in node.handlers):
            guarded.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    return guarded


def imports_of(path: Path) -> set[str]:
    names = set()
    tree = ast.parse(path.read_text())
    optional = optional_imports(tree)
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import inside genecompass
                base = path.relative_to(ROOT).with_suffix("").parts[:-node.level]
                names.add(".".join([*base, node.module] if node.module else base))
                for alias in node.names:
                    names.add(".".join([*base, *(node.module.split(".") if node.module else []), alias.name]))
            elif node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def third_party_imports(script: Path) -> set[str]:
    """Top-level third-party modules a script needs, following genecompass imports."""
    seen_files, todo, found = set(), [script], set()
    while todo:
        path = todo.pop()
        if path in seen_files:
            continue
        seen_files.add(path)
        for name in imports_of(path):
            top = name.split(".")[0]
            if top == "genecompass":
                module = ROOT.joinpath(*name.split("."))
                for candidate in (module.with_suffix(".py"), module / "__init__.py"):
                    if candidate.exists():
                        todo.append(candidate)
            elif top not in sys.stdlib_module_names and top not in PROVIDED and top != "__future__":
                found.add(top)
    return found


def env_packages(env_file: Path) -> set[str]:
    spec = yaml.safe_load(env_file.read_text())
    names = set()
    for dependency in spec["dependencies"]:
        if isinstance(dependency, str):
            names.add(re.split(r"[\s=<>!]", dependency.strip())[0])
    return names


RULES = parse_rules()


def test_rules_were_found():
    assert {"all", "qc", "token_dictionary", "tokenize", "corpus", "simulate_world"} <= set(RULES)


@pytest.mark.parametrize("name", sorted(n for n in RULES if n != "all"))
def test_rule_has_required_directives(name):
    missing = [d for d in REQUIRED_DIRECTIVES if d not in RULES[name]]
    assert not missing, f"rule {name} ({RULES[name]['file']}) lacks {missing}"
    resources = RULES[name]["resources"]
    assert "mem_mb" in resources and "runtime" in resources, f"rule {name}: resources {resources}"


def rule_script(rule: dict) -> Path | None:
    """The Python script a rule runs: its script: directive, or scripts/*.py named in its shell command."""
    if "script" in rule:
        return (ROOT / "rules" / rule["script"].strip("\"'")).resolve()
    match = re.search(r"scripts\"?\s*/\s*\"?(\w+)\.py", rule.get("params", "") + rule.get("shell", ""))
    return ROOT / "scripts" / f"{match.group(1)}.py" if match else None


@pytest.mark.parametrize("name", sorted(n for n in RULES if rule_script(RULES[n])))
def test_env_file_lists_every_script_import(name):
    rule = RULES[name]
    env = (ROOT / "rules" / rule["conda"].strip("\"'")).resolve()
    script = rule_script(rule)
    assert env.exists(), f"rule {name}: env file {env} missing"
    assert script.exists(), f"rule {name}: script {script} missing"
    needed = {CONDA_NAMES.get(module, module) for module in third_party_imports(script)}
    missing = needed - env_packages(env)
    assert not missing, f"rule {name}: {env.name} lacks {sorted(missing)} imported by {script.name}"


def test_every_script_is_used_by_a_rule():
    used = {rule_script(r).name for r in RULES.values() if rule_script(r)}
    scripts = {p.name for p in (ROOT / "scripts").glob("*.py")}
    assert scripts <= used, f"scripts no rule runs: {sorted(scripts - used)}"


def run_snakemake(*args, cwd=ROOT, env=None):
    return subprocess.run(snakemake_command(configfiles=(), samples=None, cores=None, extra=args), cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


# Libraries that planning (snakemake -n, --lint, --report) must not load: each costs seconds per
# Snakemake start, and a cluster's login node may not even have them.
HEAVY_LIBRARIES = ("torch", "transformers", "torch_geometric", "datasets", "scanpy", "numba", "gensim", "rdkit",
                   "anndata", "sklearn", "matplotlib", "h5py", "igraph", "safetensors")

# A sitecustomize that makes those libraries unimportable in every Python started with it on the path.
IMPORT_BLOCKER = f"""
import sys

class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {HEAVY_LIBRARIES!r}:
            raise ImportError(f"{{name}} imported while planning the workflow")
        return None

sys.meta_path.insert(0, _Blocked())
"""


@pytest.mark.workflow
def test_planning_imports_no_heavy_library(tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(IMPORT_BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), *filter(None, [os.environ.get("PYTHONPATH")])])}
    blocked = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert blocked.returncode != 0 and "imported while planning" in blocked.stderr, "the import blocker does not work"
    workdir = tmp_path / "run"
    result = run_snakemake("-n", "--cores", "1", "--directory", str(workdir), "--snakefile", str(ROOT / "Snakefile"),
                           "--configfile", str(ROOT / "config" / "config.yaml"),
                           "--config", f"samples={ROOT / 'config' / 'samples.tsv'}", env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    assert "pretrain" in result.stdout and "summary_table" in result.stdout
    result = run_snakemake("--lint", env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]


@pytest.mark.workflow
def test_lint_is_clean():
    result = run_snakemake("--lint")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Congratulations, your workflow is in a good condition!" in output, output


@pytest.mark.workflow
def test_dry_run_shows_the_dag(tmp_path):
    result = run_snakemake("-n", "--cores", "1", "--directory", str(tmp_path),
                           "--snakefile", str(ROOT / "Snakefile"),
                           "--configfile", str(ROOT / "config" / "config.yaml"),
                           "--config", f"samples={ROOT / 'config' / 'samples.tsv'}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for rule in ("simulate_world", "gene_table", "orthologs", "qc", "qc_summary",
                 "token_dictionary", "gene_histogram", "gene_medians", "tokenize", "corpus",
                 "grn_network", "gene_families", "coexpression_pairs", "gene2vec_embedding",
                 "promoter_sequences", "promoter_embedding", "knowledge", "pretrain", "untrained_model",
                 "embed_sample", "cell_embeddings", "gene_embeddings", "embedding_analysis"):
        assert re.search(rf"\b{rule}\b", output), f"{rule} missing from the dry run:\n{output}"


@pytest.mark.parametrize("name", ["pretrain", "promoter_embedding", "embed_sample"])
def test_gpu_rules_take_their_gpus_from_config(name):
    resources = RULES[name]["resources"]
    assert "gpu=" in resources, f"rule {name}: no gpu resource: {resources}"
    assert "config[" in resources.split("gpu=", 1)[1], f"rule {name}: gpu resource not from config: {resources}"


def planned_pretraining(tmp_path, extra: tuple[str, ...] = (), **pretrain) -> str:
    """Dry-run output (-p) of the main variant's pretraining with ``pretrain`` settings overridden."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    overlay = tmp_path / "pretrain.yaml"
    overlay.write_text(yaml.safe_dump({"pretrain": {**config["pretrain"], **pretrain}}))
    result = run_snakemake("-n", "-p", "--cores", "1", *extra, "--directory", str(tmp_path),
                           "--snakefile", str(ROOT / "Snakefile"),
                           "--configfile", str(ROOT / "config" / "config.yaml"), str(overlay),
                           "--config", f"samples={ROOT / 'config' / 'samples.tsv'}", "--forcerun", "pretrain",
                           "--", "results/model/genecompass/summary.json")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


@pytest.mark.workflow
@pytest.mark.parametrize("gpus, launcher", [
    (0, f"{sys.executable} "), (1, f"{sys.executable} "),
    (2, f"{sys.executable} -m torch.distributed.run --standalone --nnodes 1 --nproc-per-node 2 ")])
def test_pretraining_launcher_follows_the_gpu_count(tmp_path, gpus, launcher):
    output = planned_pretraining(tmp_path, ("--resources", "gpu=2"), gpus=gpus)
    commands = [line for line in output.splitlines() if "scripts/pretrain.py" in line]
    assert commands, output
    assert all(f"PYTHONSAFEPATH=1; {launcher}" in line for line in commands), commands
    assert f"gpu={gpus}" in output


@pytest.mark.workflow
def test_multi_node_pretraining_runs_srun_and_torchrun_with_slurm_variables(tmp_path):
    output = planned_pretraining(tmp_path, gpus=4, nodes=3)
    command = next(line for line in output.splitlines() if "scripts/pretrain.py" in line)
    # World size from SLURM at run time (nodes) and the config (processes per node), nothing fixed.
    assert 'srun --ntasks-per-node 1 --ntasks "$SLURM_NNODES"' in command
    assert '-m torch.distributed.run --nnodes "$SLURM_NNODES" --nproc-per-node 4' in command
    assert '--rdzv-backend c10d --rdzv-id "$SLURM_JOB_ID"' in command and ":29500" in command
    # The job asks SLURM for 3 nodes with 4 GPUs each (gres is per node; --gpus would be per job).
    assert "nodes=3" in output and "gres=gpu:4" in output and "gpu=0" in output


@pytest.mark.workflow
@pytest.mark.realdata
def test_real_config_dry_run_plans_every_stage(shared_data):
    """config/real.yaml layered on the demo config: its lists replace the demo's (samples, pairs)."""
    result = run_snakemake("-n", "--cores", "1", "--configfile", "config/real.yaml")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    for target in ("results/qc/baron_human.h5ad", "results/model/genecompass/summary.json",
                   "results/tasks/came/baron_mouse_to_human/genecompass_came/metrics.json"):
        assert target in output, f"{target} not planned:\n{output[-3000:]}"
    assert "demo_mouse_to_human" not in output
    # the demo's promoter FASTA is unset by the real config, not merged with its EPDnew files
    assert "epd_human_core_promoters_sequence.txt" in output
    assert "results/simulate/references/promoters_human.fa" not in output
    # the CPU overlay layers on top
    result = run_snakemake("-n", "--cores", "1", "--configfile", "config/real.yaml", "config/real_cpu.yaml")
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]


def dry_run_with_overlay(tmp_path, overlay: dict):
    """A dry run of the demo config with ``overlay`` layered on top, in an empty directory."""
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return run_snakemake("-n", "--cores", "1", "--directory", str(tmp_path), "--snakefile", str(ROOT / "Snakefile"),
                         "--configfile", str(ROOT / "config" / "config.yaml"), str(path),
                         "--config", f"samples={ROOT / 'config' / 'samples.tsv'}")


@pytest.mark.workflow
def test_two_promoter_sources_for_a_species_is_a_clear_error(tmp_path):
    result = dry_run_with_overlay(tmp_path, {"references": {"promoters": {"human": {
        "epd_sequences": "a.txt", "epd_ensembl": "b.txt"}}}})  # merged onto the demo's fasta
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "references.promoters.human has keys ['epd_ensembl', 'epd_sequences', 'fasta']" in output, output[-3000:]


@pytest.mark.workflow
def test_task_naming_an_unknown_sample_is_a_clear_error(tmp_path):
    result = dry_run_with_overlay(tmp_path, {"tasks": {"came": {"seeds": [0], "pairs": [
        {"name": "bad", "reference": ["nope"], "query": ["human_s1"], "label_column": "cell_type"}]}}})
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "tasks.came.pairs 'bad' names samples ['nope'] that the sample sheet lacks" in output, output[-3000:]
