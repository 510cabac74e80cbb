"""The isolated virtual environment a fidelity bench runs a published package in (stdlib only).

``ensure_venv`` builds it once with the bench's pinned install steps, checks that the package imports,
and stamps it with the pins; a later run with the same pins reuses it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path, installs: Sequence[Sequence[str]], check: str, *, rebuild: bool = False,
                stamp: dict | None = None, env: dict | None = None, log=print) -> float:
    """Create (once) ``venv``: each of ``installs`` is one ``pip install`` argument list, run in order;
    ``check`` is Python code the built venv must run. Returns the seconds spent building (0: cached)."""
    stamp_text = json.dumps({"installs": [list(step) for step in installs], "python": sys.version.split()[0],
                             **(stamp or {})})
    stamp_file = venv / "fidelity_stamp.json"
    if rebuild and venv.exists():
        shutil.rmtree(venv)
    if stamp_file.exists() and stamp_file.read_text() == stamp_text and venv_python(venv).exists():
        log(f"published-package venv cached at {venv}")
        return 0.0
    if venv.exists():
        shutil.rmtree(venv)
    log(f"building the published-package venv at {venv} (once)")
    start = time.time()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off",
           "-q"]
    for step in installs:
        subprocess.run([*pip, *step], check=True)
    subprocess.run([str(venv_python(venv)), "-c", check], check=True, env={**os.environ, **(env or {})})
    stamp_file.write_text(stamp_text)
    return time.time() - start


def add_shared_options(parser, default_venv: Path) -> None:
    """The options every fidelity bench takes: ``--seeds``, ``--venv``, ``--rebuild-venv``."""
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 on each side (default 3)")
    parser.add_argument("--venv", type=Path, default=default_venv)
    parser.add_argument("--rebuild-venv", action="store_true", help="delete and rebuild the cached venv")


def beyond_seed_spread(difference: float, sd_ours: float, sd_published: float) -> bool:
    """The benches' one criterion: a difference larger than the two seed sds together."""
    return abs(difference) > sd_ours + sd_published
