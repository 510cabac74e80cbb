"""Errors that tell a user which file and field are wrong, and how to fix it."""

from __future__ import annotations

import os


class InputError(ValueError):
    """Bad user input: names the file, the field, the problem and the fix."""

    def __init__(self, path: str | os.PathLike | None, field: str, problem: str, fix: str):
        self.path = str(path) if path is not None else "<input>"
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.path}: field '{field}': {problem}. Fix: {fix}")
