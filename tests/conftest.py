"""Shared pytest fixtures and markers."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

# Public reference data lives beside the repository (../shared/data), never inside it.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _snakemake_only_in_workflow_tests(request, monkeypatch):
    """The fast tier starts no Snakemake: a test that does must carry the ``workflow`` marker."""
    if request.node.get_closest_marker("workflow"):
        return
    import subprocess

    original = subprocess.Popen.__init__

    def guarded(self, args, *rest, **kwargs):
        words = [str(arg) for arg in (args if isinstance(args, (list, tuple)) else [args])]
        if any("snakemake" in word.rsplit("/", 1)[-1] for word in words):
            raise AssertionError(f"{request.node.nodeid} runs Snakemake ({' '.join(words)[:200]}): mark it "
                                 "@pytest.mark.workflow")
        original(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ../shared/data folder; skips the test when this checkout has none."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"public reference data not found at {SHARED_DATA} (a fresh clone has no ../shared)")
    return SHARED_DATA


ROOT = Path(__file__).resolve().parents[1]

from genecompass.knowledge.assemble import random_knowledge  # noqa: E402,F401  (tests import it from here)


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to ``n`` inside, restored after (tiny models run fastest on one)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def tiny_pretraining_model(vocab_size: int = 40, knowledge_dim: int | None = 8, max_genes: int = 16,
                           initializer_range: float = 0.2, seed: int = 0):
    """A seeded tiny GeneCompassForPretraining in eval mode, with random knowledge when ``knowledge_dim``.

    The init range is larger than the default 0.02 so genes visibly influence
    each other's predictions.
    """
    import torch

    from genecompass.model import GeneCompassConfig, GeneCompassForPretraining

    torch.manual_seed(seed)
    fields = {"knowledge_dim": knowledge_dim} if knowledge_dim else {"knowledge_kinds": []}
    config = GeneCompassConfig.preset("tiny", vocab_size=vocab_size, max_position_embeddings=max_genes + 1,
                                      initializer_range=initializer_range, **fields)
    model = GeneCompassForPretraining(config)
    if knowledge_dim:
        model.set_knowledge(random_knowledge(vocab_size, knowledge_dim))
    return model.eval()


def write_text(path: Path, text: str) -> Path:
    """Write a small fixture file, gzipped when its name ends in .gz."""
    import gzip

    if str(path).endswith(".gz"):
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


DEMO_CONFIG = ROOT / "config" / "config.yaml"
DEMO_SAMPLES = ROOT / "config" / "samples.tsv"


def snakemake_command(workdir: Path | None = None, *targets: str, configfiles=(DEMO_CONFIG,), samples=DEMO_SAMPLES,
                      cores: int | None = 1, extra: tuple[str, ...] = ()) -> list[str]:
    """The workflow's Snakemake, the one way the tests start it.

    ``configfiles`` (the demo config unless given), the sample sheet ``samples`` (the demo's; None: the
    config's), ``cores`` (None: not given), then ``targets`` and ``extra`` options last: options such as
    --configfile and --quiet take several values, so targets go before them.
    """
    import sys

    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
    if workdir is not None:
        command += ["--directory", str(workdir)]
    if configfiles:
        command += ["--configfile", *map(str, configfiles)]
    if samples is not None:
        command += ["--config", f"samples={samples}"]
    if cores is not None:
        command += ["--cores", str(cores)]
    return [*command, *targets, *extra]


def run_workflow(workdir: Path, *targets: str, extra: tuple[str, ...] = ()):
    """Run the workflow's Snakefile with the demo config in ``workdir``."""
    import subprocess

    command = snakemake_command(workdir, *targets, cores=2, extra=(*extra, "--quiet", "rules"))
    # The whole demo DAG: about 10 minutes on two cores; the limit only guards against a hang.
    return subprocess.run(command, capture_output=True, text=True, timeout=3000)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The demo DAG run once per test session; returns its working directory.

    GENECOMPASS_DEMO_RUN=<folder of a finished demo run> reuses that run instead (for iterating on
    the workflow tests; CI always runs the demo afresh)."""
    reuse = os.environ.get("GENECOMPASS_DEMO_RUN")
    if reuse and not os.environ.get("CI"):
        return Path(reuse)
    workdir = tmp_path_factory.mktemp("demo")
    result = run_workflow(workdir)
    if result.returncode != 0:
        raise AssertionError(f"demo workflow failed:\n{result.stdout[-5000:]}\n{result.stderr[-10000:]}")
    return workdir
