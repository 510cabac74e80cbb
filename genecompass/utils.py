"""Small helpers shared by the workflow's entry points: logs and atomic outputs."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import traceback
from pathlib import Path


@contextlib.contextmanager
def logged_to(log_path):
    """Send stdout, stderr and `logging` to a rule's log file.

    A failure is written to the log with its traceback and repeated in one
    line on the terminal, so the user sees which file and field to fix
    without opening the log.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    terminal = sys.stderr
    with open(log_path, "w", buffering=1) as log, \
            contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        except BaseException as error:
            traceback.print_exc(file=log)
            print(f"ERROR: {error}  (log: {log_path})", file=terminal)
            raise
        finally:
            root.removeHandler(handler)


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path beside ``path``; move it into place on success.

    An interrupted or failed write leaves nothing under the final name, so a
    later run never mistakes a half-written file or folder for a result.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the suffix: some writers choose the format from it.
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    _remove(tmp)
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_json(data, path) -> None:
    with atomic_output(path) as tmp, open(tmp, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, default=_json_default)
        handle.write("\n")


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def settings_from_config(cls, values: dict | None, section: str, **fixed):
    """The dataclass ``cls`` from a config mapping: an unknown key is an error naming ``section``
    and the known keys; ``fixed`` values (e.g. the seed) override the mapping."""
    import dataclasses

    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(values or {}) - known)
    if unknown:
        raise ValueError(f"{section}: unknown setting(s) {unknown}; known: {sorted(known)}")
    return cls(**{**(values or {}), **fixed})
