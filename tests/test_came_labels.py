"""Cell-type labels across species: matched after normalising spelling, or through a label map."""

from __future__ import annotations

import anndata as ad
import pytest

from genecompass.errors import InputError
from genecompass.tasks.came.labels import label_key, match_labels


def test_spellings_match_and_the_report_lists_each_side():
    assert label_key("T cell") == label_key("t_cell") == label_key("T-Cell") == "tcell"
    renamed, report = match_labels(["T_cell", "B_cell", "alpha", "immune_other"],
                                   ["t_cell", "alpha", "Alpha", "mast", "t cell"])
    assert renamed.tolist() == ["T_cell", "alpha", "alpha", "mast", "T_cell"]
    assert report["matched"] == {"T_cell": ["t cell", "t_cell"], "alpha": ["Alpha", "alpha"]}
    assert report["reference_only"] == ["B_cell", "immune_other"] and report["query_only"] == ["mast"]


def test_a_label_map_wins_and_must_name_reference_labels():
    renamed, report = match_labels(["immune_other", "alpha"], ["mast", "alpha"], {"mast": "immune_other"})
    assert renamed.tolist() == ["immune_other", "alpha"] and report["query_only"] == []
    with pytest.raises(InputError, match="label_map"):
        match_labels(["alpha"], ["mast"], {"mast": "mast_cell"})


@pytest.mark.realdata
def test_real_baron_mouse_and_human_t_cells_are_one_type(shared_data):
    folder = shared_data / "counts/baron_pancreas"
    mouse = ad.read_h5ad(folder / "baron2016_pancreas_mouse.h5ad", backed="r").obs["cell_type1"]
    human = ad.read_h5ad(folder / "baron2016_pancreas_human.h5ad", backed="r").obs["cell_type1"]
    renamed, report = match_labels(mouse, human)
    assert report["matched"]["T_cell"] == ["t_cell"]
    assert (renamed == "T_cell").sum() == (human == "t_cell").sum() > 0
    assert set(report["query_only"]) == {"acinar", "epsilon", "mast"}
    assert set(report["reference_only"]) == {"B_cell", "immune_other"}
