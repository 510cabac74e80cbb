"""The demo DAG on a real single-node SLURM cluster, through workflow/profiles/slurm.

Needs root and Debian's slurm-wlm + munge (``.ci/run`` installs them); elsewhere the tests skip
with the reason, except under CI=true, where a missing prerequisite fails them.

1. QC -> tokens -> corpus run as sbatch jobs from the simulated inputs of the session's local demo
   run; the outputs must equal the local ones.
2. Pre-training (knowledge copied from the local run) as an sbatch job; the weights must equal the
   local run's.
3. The multi-node launch command (srun + torchrun with a c10d rendezvous), taken from the rule
   with pretrain.nodes = 2, runs inside a one-node allocation with two CPU processes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from conftest import ROOT, snakemake_command
from demo_slice import copy_from_demo
from slurm_cluster import SingleNodeCluster, missing_binaries

pytestmark = pytest.mark.workflow

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _prerequisites() -> str | None:
    """Why the SLURM tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "the single-node cluster runs its daemons as root"
    missing = missing_binaries()
    if missing:
        return f"SLURM/munge binaries missing: {missing} (apt-get install slurm-wlm munge)"
    if SingleNodeCluster.SYSTEM_CONF.exists():
        return f"{SingleNodeCluster.SYSTEM_CONF} exists: a real SLURM is configured on this machine"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = _prerequisites()
    if reason:
        if IN_CI:
            pytest.fail(f"SLURM tests must run in CI: {reason}")
        pytest.skip(reason)
    with SingleNodeCluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


def snakemake(workdir: Path, cluster: SingleNodeCluster, *targets: str, extra: tuple[str, ...] = ()):
    command = snakemake_command(
        workdir, cores=None,
        # This cluster has neither accounts nor accounting, and one small node.
        extra=("--workflow-profile", str(ROOT / "workflow" / "profiles" / "slurm"), "--slurm-no-account",
               "--set-resources", "pretrain:mem_mb=8000", "promoter_embedding:mem_mb=8000", "--jobs", "4",
               *targets, *extra))
    return subprocess.run(command, capture_output=True, text=True, env=cluster.env, timeout=1800)


def slurm_job_logs(workdir: Path) -> dict[str, list[Path]]:
    """SLURM logs the executor kept, by rule: results/logs/slurm/rule_<rule>/<wildcards>/<jobid>.log."""
    logs: dict[str, list[Path]] = {}
    for path in (workdir / "results" / "logs" / "slurm").rglob("*.log"):
        rule = next(p for p in path.relative_to(workdir / "results" / "logs" / "slurm").parts)
        logs.setdefault(rule.removeprefix("rule_"), []).append(path)
    return logs


def submitted_job_ids(output: str) -> list[int]:
    return [int(j) for j in re.findall(r"SLURM jobid (\d+)", output)]


def planned_rules(workdir: Path, cluster: SingleNodeCluster, target: str) -> set[str]:
    result = snakemake(workdir, cluster, target, extra=("--dry-run", "--quiet", "rules"))
    assert result.returncode == 0, result.stderr[-3000:]
    table = re.findall(r"^(\w+)\s+(\d+)$", result.stdout + result.stderr, flags=re.MULTILINE)
    return {rule for rule, _ in table if rule != "total"}


def check_run(result, workdir: Path, expected_rules: set[str]) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    ids = submitted_job_ids(output)
    logs = slurm_job_logs(workdir)
    assert expected_rules <= set(logs), f"no SLURM log for {expected_rules - set(logs)}: {sorted(logs)}"
    # Every job went through sbatch: one SLURM job ID per job, and its log is named by that ID.
    logged_ids = {int(p.stem) for paths in logs.values() for p in paths if p.stem.isdigit()}
    assert ids and set(ids) <= logged_ids, (ids, sorted(logged_ids))


def test_demo_slice_runs_through_sbatch_and_matches_the_local_run(demo_run, cluster, tmp_path):
    import datasets
    from safetensors.numpy import load_file

    workdir = tmp_path / "slurm_run"
    copy_from_demo(demo_run, workdir, ["results/simulate"])

    # 1. QC -> tokens -> corpus, every job an sbatch job.
    first = snakemake(workdir, cluster, "results/corpus/dataset", "results/qc/summary.tsv")
    check_run(first, workdir, {"qc", "token_dictionary", "tokenize", "corpus"})
    for sample in ("human_s1", "mouse_s1"):
        local, remote = (ad.read_h5ad(d / f"results/qc/{sample}.h5ad") for d in (demo_run, workdir))
        assert local.obs_names.equals(remote.obs_names) and local.var_names.equals(remote.var_names)
        assert (local.X != remote.X).nnz == 0
    assert (workdir / "results/tokens/dictionary.tsv").read_bytes() == \
        (demo_run / "results/tokens/dictionary.tsv").read_bytes()
    local, remote = (datasets.load_from_disk(str(d / "results/corpus/dataset")) for d in (demo_run, workdir))
    for split in ("train", "validation"):
        assert list(local[split]["cell_id"]) == list(remote[split]["cell_id"])
        for column in ("input_ids", "values"):
            assert all(np.array_equal(a, b) for a, b in zip(local[split][column], remote[split][column],
                                                            strict=True))

    # 2. Pre-training alone (the knowledge is the local run's) as one sbatch job.
    copy_from_demo(demo_run, workdir, ["results/knowledge"], start=time.time())  # newer than step 1's outputs
    assert planned_rules(workdir, cluster, "results/model/genecompass/summary.json") == {"pretrain"}
    second = snakemake(workdir, cluster, "results/model/genecompass/summary.json")
    check_run(second, workdir, {"pretrain"})
    local, remote = (load_file(str(d / "results/model/genecompass/model/model.safetensors"))
                     for d in (demo_run, workdir))
    assert local.keys() == remote.keys()
    assert all(np.array_equal(local[k], remote[k]) for k in local)


def test_multi_node_launch_runs_under_srun_and_torchrun(demo_run, cluster, tmp_path):
    """The rule's nodes > 1 command (srun + torchrun, c10d rendezvous) in a one-node allocation."""
    workdir = tmp_path / "multinode"
    copy_from_demo(demo_run, workdir, ["results/corpus", "results/knowledge", "results/tokens"])
    overlay = tmp_path / "multinode.yaml"
    overlay.write_text("pretrain: {gpus: 2, nodes: 2, max_steps: 4, checkpoint_every: 2, eval_every: 2}\n")
    printed = snakemake(workdir, cluster, "results/model/no_knowledge/summary.json",
                        extra=("--configfile", str(ROOT / "config" / "config.yaml"), str(overlay),
                               "--dry-run", "--printshellcmds", "--allowed-rules", "pretrain"))
    assert printed.returncode == 0, printed.stderr[-3000:]
    command = next(line.split(":", 1)[1].strip() for line in printed.stdout.splitlines()
                   if line.startswith("Shell command:") and "srun" in line)
    assert '--nnodes "$SLURM_NNODES"' in command and "--rdzv-backend c10d" in command

    # Outside a SLURM job the command refuses to start, naming the fix.
    outside = subprocess.run(["bash", "-c", command], cwd=workdir, capture_output=True, text=True,
                             env={k: v for k, v in cluster.env.items() if not k.startswith("SLURM_JOB")})
    assert outside.returncode != 0 and "use the slurm profile" in outside.stderr

    # One node, two CPU processes (gpus: 2 -> --nproc-per-node 2, gloo). Snakemake would make the log
    # folder and run the command with bash; a batch script does the same here.
    (workdir / "results/logs/model").mkdir(parents=True, exist_ok=True)
    script = tmp_path / "multinode.sh"
    script.write_text(f"#!/bin/bash\nset -euo pipefail\n{command}\n")
    job = subprocess.run(["sbatch", "--wait", "--parsable", "--nodes=1", "--ntasks=1", "--cpus-per-task=2",
                          f"--chdir={workdir}", f"--output={tmp_path / 'multinode.out'}", str(script)],
                         capture_output=True, text=True, env=cluster.env, timeout=900)
    output = (tmp_path / "multinode.out").read_text() if (tmp_path / "multinode.out").exists() else ""
    log = workdir / "results/logs/model/pretrain_no_knowledge.log"
    assert job.returncode == 0, (job.stderr, output, log.read_text()[-4000:] if log.exists() else "")
    summary = json.loads((workdir / "results/model/no_knowledge/summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 4
