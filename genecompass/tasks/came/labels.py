"""Cell-type labels of a reference and a query written differently (``T_cell`` / ``t_cell``).

Two labels are the same type when they agree after lower-casing and dropping
spaces, hyphens and underscores, or when the user's ``label_map`` (query label
→ reference label) says so; the map wins. Query labels are renamed to the
reference's spelling, so predictions (always reference labels) and truth
compare; the report lists what was matched and what exists on one side only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import numpy as np

from genecompass.errors import InputError

_SEPARATORS = re.compile(r"[\s_\-]+")


def label_key(label: str) -> str:
    """The form two spellings of one label share: lower case, without spaces, hyphens, underscores."""
    return _SEPARATORS.sub("", str(label)).lower()


def match_labels(reference: Iterable[str], query: Iterable[str],
                 label_map: Mapping[str, str] | None = None) -> tuple[np.ndarray, dict]:
    """The query labels in the reference's spelling where they match one, and the matching report.

    Returns ``(renamed query labels, report)``; the report has ``matched``
    (reference label → the query labels renamed to it), ``reference_only``,
    ``query_only`` and the ``label_map`` used.
    """
    query = np.asarray([str(label) for label in query], dtype=object)
    reference_labels = sorted({str(label) for label in reference})
    label_map = {str(k): str(v) for k, v in (label_map or {}).items()}
    unknown = sorted(set(label_map.values()) - set(reference_labels))
    if unknown:
        raise InputError(None, "label_map", f"maps to {unknown}, which the reference does not have "
                         f"(it has {reference_labels})", "map query labels to reference labels")
    by_key: dict[str, str] = {}
    for label in reference_labels:
        by_key.setdefault(label_key(label), label)
    renamed_to = {}
    for label in sorted(set(query)):
        target = label_map.get(label, by_key.get(label_key(label)))
        if target is not None:
            renamed_to[label] = target
    renamed = np.array([renamed_to.get(label, label) for label in query], dtype=object)
    matched: dict[str, list[str]] = {}
    for label, target in renamed_to.items():
        matched.setdefault(target, []).append(label)
    report = {
        "matched": {target: sorted(labels) for target, labels in sorted(matched.items())},
        "reference_only": [label for label in reference_labels if label not in matched],
        "query_only": sorted(set(query) - set(renamed_to)),
        "label_map": label_map,
    }
    return renamed, report


__all__ = ["label_key", "match_labels"]
