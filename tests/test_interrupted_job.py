"""A job killed mid-write leaves nothing that a later run takes for a finished output.

Snakemake runs the qc job of one demo sample (inputs copied from the session's demo run) and the
whole process group, Snakemake and the job, gets SIGKILL -- no handler runs, as after a power cut or
an out-of-memory kill. Three moments:

- ``job_started``: as soon as the job's log file appears (a plain kill, nothing injected);
- ``mid_write``: the first output (the .h5ad) is completely written under its temporary name, not yet
  renamed into place;
- ``between_outputs``: three of the four outputs are in place, the last (the figure) is still a
  temporary file.

The last two moments are made exact by a ``sitecustomize`` on the job's PYTHONPATH that wraps
``genecompass.utils.atomic_output`` (every writer of the rule goes through it): before renaming the
named output it writes a marker file and sleeps, and the test kills the group when the marker appears.

What holds afterwards (the truth, as the code makes it):

- ``atomic_output`` writes ``.<stem>.tmp-<pid><suffix>`` beside the output and renames it when
  complete, so a killed write never leaves a partial file under an output's name. The temporary file
  stays after the kill, and the re-run leaves it there (``atomic_output`` removes only its own pid's
  temporary file); no rule reads it: it is not the output's name, and no output pattern matches a
  dot-file (the sample wildcard starts with a letter or digit).
- Snakemake marked the job's outputs incomplete (``.snakemake/incomplete``) before the job started and
  the kill left the marks. A dry run refuses the outputs that are in place (IncompleteFilesException,
  naming each) or, when none is, plans the job for its missing outputs; with ``--rerun-incomplete`` (as
  workflow/profiles/default sets) it plans the job again.
- The killed Snakemake left its lock: a re-run needs ``snakemake --unlock`` first (Snakemake's
  documented procedure after a kill). The re-run then writes outputs byte-identical to an
  uninterrupted run's, and no incomplete mark remains.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import anndata as ad
import pytest
from conftest import snakemake_command
from demo_slice import copy_from_demo, sha256

pytestmark = pytest.mark.workflow

SAMPLE = "human_s1"
TARGET = f"results/qc/{SAMPLE}.h5ad"
OUTPUTS = [f"results/qc/{SAMPLE}{suffix}" for suffix in (".h5ad", ".filters.tsv", ".gene_ids.json", ".qc.png")]
LOG = f"results/logs/qc/{SAMPLE}.log"
# The qc job's inputs: the simulated world (counts, HGNC table) and the gene tables made from it.
INPUTS = ("results/simulate", "results/references")
# The Snakefile's constraint of the sample wildcard.
SAMPLE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"

SITECUSTOMIZE = '''
"""Test hook (tests/test_interrupted_job.py): pause before an atomic output is renamed into place."""
import os

_TARGET = os.environ.get("GENECOMPASS_TEST_PAUSE_BEFORE_RENAME")
if _TARGET:
    import contextlib
    import time
    from pathlib import Path

    import genecompass.utils as _utils

    _original = _utils.atomic_output

    @contextlib.contextmanager
    def _pausing_atomic_output(path):
        with _original(path) as tmp:
            yield tmp
            if Path(path).name == _TARGET:   # written completely under the temporary name
                Path(os.environ["GENECOMPASS_TEST_PAUSED"]).write_text(str(tmp))
                time.sleep(600)

    _utils.atomic_output = _pausing_atomic_output
'''

# scenario -> (output to pause before renaming, or None; outputs in place when killed, or None: any)
SCENARIOS = {
    "job_started": (None, None),
    "mid_write": (f"{SAMPLE}.h5ad", []),
    "between_outputs": (f"{SAMPLE}.qc.png", OUTPUTS[:3]),
}


def run(workdir: Path, *extra: str, target: str = TARGET) -> subprocess.CompletedProcess:
    """Snakemake on the target; stdout holds both streams (Snakemake's messages go to either)."""
    return subprocess.run(snakemake_command(workdir, target, extra=extra), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)


def leftover_temporaries(workdir: Path) -> dict[str, str]:
    """Temporary files of atomic_output in the job's output folder, with their checksums."""
    return {p.name: sha256(p) for p in (workdir / "results/qc").glob(".*.tmp-*")}


def incomplete_marks(workdir: Path) -> list[str]:
    """Snakemake's marks of outputs of jobs that started and did not end."""
    folder = workdir / ".snakemake/incomplete"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def processes_in(workdir: Path) -> list[str]:
    """Command lines of live processes that mention the working directory."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = next(line for line in (proc / "status").read_text().splitlines() if line.startswith("State"))
            except (OSError, StopIteration):
                continue
            if str(workdir) in cmdline and "zombie" not in state:
                found.append(cmdline)
    return found


@pytest.fixture(scope="module")
def uninterrupted(demo_run, tmp_path_factory) -> Path:
    """The same job run to its end in a fresh copy."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    copy_from_demo(demo_run, workdir, INPUTS)
    # The copied inputs are up to date: the target's one job is the qc job (as in every scenario's copy).
    planned = run(workdir, "--dry-run")
    assert planned.returncode == 0, planned.stdout[-3000:]
    assert re.search(r"^qc\s+1$", planned.stdout, re.M) and re.search(r"^total\s+1$", planned.stdout, re.M), \
        planned.stdout[-3000:]
    result = run(workdir)
    assert result.returncode == 0, result.stdout[-5000:]
    return workdir


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_killed_job_leaves_no_output_taken_for_finished(scenario, demo_run, uninterrupted, tmp_path):
    pause_before, in_place_when_killed = SCENARIOS[scenario]
    workdir = tmp_path / "run"
    copy_from_demo(demo_run, workdir, INPUTS)

    env = dict(os.environ)
    marker = tmp_path / "paused"
    if pause_before:
        hook = tmp_path / "hook"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(hook), env.get("PYTHONPATH")])),
                   GENECOMPASS_TEST_PAUSE_BEFORE_RENAME=pause_before, GENECOMPASS_TEST_PAUSED=str(marker))
    trigger = marker if pause_before else workdir / LOG

    # Snakemake and its job in one new process group (the job is Snakemake's child), killed together.
    process = subprocess.Popen(snakemake_command(workdir, TARGET), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    killed = False
    try:
        deadline = time.time() + 300
        while process.poll() is None and time.time() < deadline:
            if trigger.exists():
                os.killpg(process.pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(0.01)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        output = process.communicate(timeout=60)[0]
    assert killed, f"the job ended before it could be killed:\n{output[-3000:]}"
    assert process.returncode == -signal.SIGKILL
    time.sleep(0.5)
    assert not processes_in(workdir), processes_in(workdir)   # the job died with Snakemake

    in_place = [path for path in OUTPUTS if (workdir / path).exists()]
    if in_place_when_killed is not None:
        assert in_place == in_place_when_killed
    temporaries = leftover_temporaries(workdir)
    if pause_before:
        # The paused output, complete under its temporary name: a dot-file no output pattern matches.
        written = Path(marker.read_text())
        stem, suffix = pause_before.rsplit(".", 1)
        assert re.fullmatch(rf"\.{re.escape(stem)}\.tmp-\d+\.{suffix}", written.name), written.name
        assert list(temporaries) == [written.name]
        assert not re.fullmatch(SAMPLE_PATTERN, written.name)
        if suffix == "h5ad":
            assert ad.read_h5ad(workdir / "results/qc" / written.name).n_obs > 0
    assert len(incomplete_marks(workdir)) == len(OUTPUTS)

    # (a) A dry run does not take what is in place for finished.
    plain = run(workdir, "--dry-run")
    if in_place:
        assert plain.returncode != 0 and "IncompleteFilesException" in plain.stdout, plain.stdout[-3000:]
        listed = plain.stdout.split("Incomplete files:", 1)[1].split()
        assert set(in_place) <= set(listed), (in_place, listed)
    else:
        assert plain.returncode == 0, plain.stdout[-3000:]
        assert re.search(r"rule qc:.*?reason: Missing output files: " + re.escape(TARGET), plain.stdout, re.S)
    forced = run(workdir, "--dry-run", "--rerun-incomplete")
    assert forced.returncode == 0, forced.stdout[-3000:]
    assert re.search(r"rule qc:.*?reason: (Forced execution|Missing output files)", forced.stdout, re.S), \
        forced.stdout[-3000:]
    assert re.search(r"^qc\s+1$", forced.stdout, re.M) and re.search(r"^total\s+1$", forced.stdout, re.M)

    # (b) The kill left Snakemake's lock; after --unlock the re-run completes the job.
    assert any((workdir / ".snakemake/locks").iterdir())
    unlocked = run(workdir, "--unlock")
    assert unlocked.returncode == 0, unlocked.stdout[-3000:]
    rerun = run(workdir, "--rerun-incomplete")
    assert rerun.returncode == 0, rerun.stdout[-5000:]
    for path in OUTPUTS:
        assert sha256(workdir / path) == sha256(uninterrupted / path), path
    assert not incomplete_marks(workdir)
    # The killed job's temporary file is left as it was, and ignored.
    assert leftover_temporaries(workdir) == temporaries
