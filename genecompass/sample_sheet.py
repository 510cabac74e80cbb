"""The sample sheet: one row per sample (sample, species, path, format[, genome, labels ...]).

Read while the workflow is planned, so only pandas and the standard library are imported here; the
count files themselves are read by :mod:`genecompass.io`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from genecompass.errors import InputError, schema_error

FORMATS = ("h5ad", "10x_h5", "10x_mtx")

_SHEET_LAYOUT = ("tab-separated, one row per sample: sample, species (human or mouse), path, format "
                 f"({', '.join(FORMATS)}) and optionally genome (docs/formats.md)")


def read_sample_sheet(path: str | os.PathLike, schema: dict | str | os.PathLike,
                      produced_under: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read and check the sample sheet; every cell a str ("" when empty), rows in file order.

    Checks, each failing with an :class:`InputError` that names the sheet, the
    column and the fix: the required columns of ``schema`` (a JSON schema of one
    row, or its YAML file), every row against it, unique sample names, and that
    every count file exists. ``produced_under``: a folder whose files a rule of
    the workflow writes (the demo's simulated world), exempt from the existence check.
    """
    if not isinstance(schema, dict):
        import yaml

        schema = yaml.safe_load(Path(schema).read_text())
    try:
        sheet = pd.read_csv(path, sep="\t", dtype=str, comment="#").fillna("")
    except FileNotFoundError:
        raise InputError(path, "samples", "sample sheet not found",
                         "set `samples` in the config to the sample sheet's path") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(path, "samples", f"cannot read the sample sheet ({type(exc).__name__}: {exc})",
                         f"write it as {_SHEET_LAYOUT}") from None
    sheet.columns = [str(c).strip() for c in sheet.columns]
    missing = [c for c in schema.get("required", []) if c not in sheet.columns]
    if missing:
        raise InputError(path, missing[0], f"missing column(s) {missing}; the sheet has {list(sheet.columns)}",
                         f"add the column(s): {_SHEET_LAYOUT}")
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    for row, record in enumerate(sheet.to_dict("records"), start=1):
        if not validator.is_valid(record):
            raise schema_error(record, schema, path, f"row {row} (sample {record.get('sample')!r})")
    duplicated = sheet["sample"].duplicated()
    if duplicated.any():
        names = sorted(sheet.loc[duplicated, "sample"].unique())
        raise InputError(path, "sample", f"duplicate sample names {names}",
                         "give every row a unique sample name")
    produced = Path(produced_under).resolve() if produced_under else None
    for record in sheet.to_dict("records"):
        counts = Path(record["path"])
        if counts.exists() or (produced is not None and produced in counts.resolve().parents):
            continue
        raise InputError(path, "path", f"sample {record['sample']!r}: {record['path']} not found "
                                       f"(relative paths start at the working directory {Path.cwd()})",
                         "correct the path, copy the file there, or remove the row")
    return sheet
