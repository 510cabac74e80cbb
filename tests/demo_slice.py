"""Run a slice of the demo DAG in a fresh working directory seeded with files of a finished demo run.

Used by tests/test_interrupted_job.py, tests/test_determinism.py and tests/test_slurm.py.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path


def copy_from_demo(demo: Path, workdir: Path, paths: Iterable[str], start: float | None = None) -> None:
    """Copy files or folders (relative paths) of a finished demo run into ``workdir``.

    The copies get mtimes in the originals' order across *all* the paths, one global order (copying
    folder after folder with fresh mtimes can make a later folder older than an earlier one's last
    file, and Snakemake would then plan jobs for "updated input files"), all a few seconds in the past,
    or from ``start`` on (e.g. now, to be newer than outputs a run just made).
    """
    files = []
    for relative in paths:
        source = demo / relative
        found = [source] if source.is_file() else [p for p in source.rglob("*") if p.is_file()]
        files += [(p.stat().st_mtime, p.relative_to(demo)) for p in found]
    now = time.time() - 60 if start is None else start
    for i, (_, relative) in enumerate(sorted(files)):
        target = workdir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(demo / relative, target)
        os.utime(target, (now + 0.001 * i, now + 0.001 * i))


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
