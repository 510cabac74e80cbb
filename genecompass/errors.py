"""Errors that tell a user which file and field are wrong, and how to fix it."""

from __future__ import annotations

import os
import re


class InputError(ValueError):
    """Bad user input: names the file, the field, the problem and the fix."""

    def __init__(self, path: str | os.PathLike | None, field: str, problem: str, fix: str):
        self.path = str(path) if path is not None else "<input>"
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.path}: field '{field}': {problem}. Fix: {fix}")


# ---------------------------------------------------------------- JSON-schema errors, readable


def _field_name(path) -> str:
    """jsonschema's path of a value as a config key: qc.min_cells, references.networks.human[0]."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _expected(schema: dict) -> str:
    """What a (sub)schema accepts, in words: "an integer >= 1", "one of ['error', 'drop']"."""
    if "enum" in schema:
        return f"one of {schema['enum']}"
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return " or ".join(_expected(alternative) for alternative in schema[key])
    types = schema.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    nouns = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
             "array": "a list", "object": "a mapping", "null": "null"}
    words = " or ".join(nouns.get(t, t) for t in types) or "a value"
    bounds = [f"{op} {schema[key]}" for key, op in (("minimum", ">="), ("exclusiveMinimum", ">"),
                                                    ("maximum", "<="), ("exclusiveMaximum", "<"))
              if key in schema]
    if "pattern" in schema:
        bounds.append(f"matching {schema['pattern']}")
    if "minItems" in schema:
        bounds.append(f"with at least {schema['minItems']} item(s)")
    if "minLength" in schema:
        bounds.append("not empty")
    text = " ".join([words, ", ".join(bounds)]).strip()
    if schema.get("description"):
        text += f" ({schema['description']})"
    return text


def _describe(error) -> tuple[str, str, str]:
    """(field, problem, fix) of one jsonschema ValidationError."""
    where = list(error.absolute_path)
    if error.validator == "required":
        named = re.match(r"^'(.+)' is a required property", error.message)
        key = named.group(1) if named else next(k for k in error.validator_value if k not in error.instance)
        field = _field_name([*where, key])
        sub = error.schema.get("properties", {}).get(key, {})
        return field, "missing", f"add {field}: {_expected(sub)}"
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known))
        field = _field_name([*where, extra[0]]) if extra else _field_name(where)
        return field, f"unknown key(s) {extra}", f"remove or rename them; known keys here: {known}"
    field = _field_name(where) or "(top level)"
    value = repr(error.instance)
    value = value if len(value) <= 80 else value[:77] + "..."
    problem = f"{value}: {error.message}" if value not in error.message else error.message
    return field, problem, f"set {field} to {_expected(error.schema)}"


def schema_error(instance, schema: dict, source, where: str = "") -> InputError | None:
    """A readable InputError for the first problem of ``instance`` against a JSON schema, else None.

    The error names ``source`` (a file), the dotted key (``qc.min_cells``),
    the value, what is wrong and what the schema accepts; further problems are
    listed after the first. ``where`` prefixes the problem (e.g. "row 3 (sample 'x')").
    """
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if not errors:
        return None
    # oneOf/anyOf: the alternative that got furthest explains it best.
    described = [_describe(jsonschema.exceptions.best_match([e])) for e in errors]
    field, problem, fix = described[0]
    if len(described) > 1:
        problem += "; also " + "; ".join(f"{f}: {p}" for f, p, _ in described[1:6])
        if len(described) > 6:
            problem += f" (and {len(described) - 6} more)"
    return InputError(source, field, f"{where}: {problem}" if where else problem, fix)


def check_config(config: dict, schema_path: str | os.PathLike, files) -> None:
    """Raise a readable :class:`InputError` when ``config`` breaks the workflow's config schema.

    ``files``: the config files it was read from (the error names them).
    """
    import yaml

    with open(schema_path) as handle:
        schema = yaml.safe_load(handle)
    source = "config " + ", ".join(str(f) for f in files) if files else "config"
    error = schema_error(config, schema, source)
    if error is not None:
        raise error
