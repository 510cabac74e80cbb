"""Every figure of the workflow: matplotlib's file backend chosen once, and one way to write a figure.

Import it inside plotting functions (``from genecompass.plotting import plt, save_figure``), so that
modules whose other functions need no figure do not load matplotlib.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: cluster nodes have no display

import matplotlib.pyplot as plt  # noqa: E402  (after the backend)

from genecompass.utils import atomic_output  # noqa: E402


def save_figure(fig, path, dpi: int = 110) -> None:
    """Write ``fig`` as PNG through :func:`genecompass.utils.atomic_output` (nothing half-written), then close it."""
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


__all__ = ["plt", "save_figure"]
