"""House checks of the fast tier: formatting and lint, and one pinned Python stack everywhere."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# conda-forge package name -> PyPI name, where they differ.
PYPI_NAMES = {"matplotlib-base": "matplotlib", "pytorch": "torch", "pytorch_geometric": "torch-geometric",
              "python-igraph": "igraph"}


def lock_versions() -> dict[str, str]:
    versions = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)$", line)
        if match:
            versions[match.group(1).lower()] = match.group(2)
    return versions


def tool(name: str) -> list[str]:
    """The command of a linter installed beside this Python (the test extras install it)."""
    path = Path(sys.executable).parent / name
    if path.exists():
        return [str(path)]
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -c requirements.lock -e '.[test]'")
    return [found]


def test_ruff_is_clean():
    result = subprocess.run([*tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakefmt_is_clean():
    result = subprocess.run([*tool("snakefmt"), "--check", "Snakefile", "rules"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_lock_pins_every_dependency_of_the_project():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *[d for extra in project["optional-dependencies"].values() for d in extra]]
    versions = lock_versions()
    names = {re.split(r"[\s\[=<>!~;]", requirement)[0].lower().replace("_", "-") for requirement in wanted}
    assert sorted(name for name in names if name not in versions) == []


@pytest.mark.parametrize("env_file", sorted((ROOT / "envs").glob("*.yaml")), ids=lambda path: path.name)
def test_conda_env_pins_the_versions_of_the_lock(env_file):
    spec = yaml.safe_load(env_file.read_text())
    assert "pytorch" not in spec["channels"], "PyTorch no longer publishes to its conda channel: use conda-forge"
    versions = lock_versions()
    for dependency in spec["dependencies"]:
        if not isinstance(dependency, str) or dependency.split()[0] in ("python", "pip"):
            continue
        name, _, pin = dependency.partition(" ")
        pypi = PYPI_NAMES.get(name, name).lower().replace("_", "-")
        assert pin.split("#")[0].strip() == f"=={versions[pypi]}", (env_file.name, dependency)
