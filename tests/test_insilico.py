"""Tests of the in-silico perturbation engine and its statistics (genecompass.tasks.insilico)."""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_pretraining_model, torch_threads
from torch import nn

from genecompass.corpus import collate_cells
from genecompass.errors import InputError
from genecompass.model import GeneCompassConfig
from genecompass.tasks.insilico import analysis as analysis_module
from genecompass.tasks.insilico import perturb as perturb_module
from genecompass.tasks.insilico.analysis import (
    gene_set_shift_tests,
    plot_candidates,
    plot_deletion_shifts,
    plot_state_shift,
    shift_summary,
    top_intersection,
)
from genecompass.tasks.insilico.perturb import (
    Perturbation,
    apply_perturbation,
    centroid,
    knockout_rows,
    state_shift,
)

# The hand-built encoders below put the cell embedding at the species token; mean pooling has its own test.
cell_embeddings = functools.partial(perturb_module.cell_embeddings, pooling="species")
shift_against_random = functools.partial(analysis_module.shift_against_random, pooling="species")
rank_candidates = functools.partial(analysis_module.rank_candidates, pooling="species")

VOCAB = 40
MAX_GENES = 16
DRIVER_A, DRIVER_B, DRIVER_BOTH = 10, 12, 11
DRIVERS = (DRIVER_A, DRIVER_B, DRIVER_BOTH)
TARGET_A = np.array([0.2, 1.0, 0.0, 0.3])  # not orthogonal to the source cells: every gene moves them a little
TARGET_B = np.array([0.2, 0.0, 1.0, -0.3])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def f32(ratio: float) -> np.float32:
    """A stored value: log1p(normalised / median), as float32."""
    return np.float32(np.log1p(ratio))


class DriverEncoder(nn.Module):
    """A hand-built encoder: the cell embedding (position 0) is ``(1, 0, 0, 0) + Σ value × W[gene]``
    over the genes it reads. W sends DRIVER_A along TARGET_A, DRIVER_B along TARGET_B,
    DRIVER_BOTH along both, and every other gene a small fixed amount along a fourth, neutral axis;
    so raising a driver moves a cell towards its target(s), raising another gene only a little
    away from where it was."""

    def __init__(self, config: GeneCompassConfig, seed: int = 0):
        super().__init__()
        self.config = config
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the module a device and a train mode
        weights = torch.zeros(config.vocab_size, 4, dtype=torch.float64)
        rng = np.random.default_rng(seed)
        weights[:, 3] = torch.as_tensor(rng.uniform(-0.3, 0.3, config.vocab_size))
        weights[DRIVER_A] = torch.tensor([0.0, 1.5, 0.0, 0.0])
        weights[DRIVER_B] = torch.tensor([0.0, 0.0, 1.5, 0.0])
        weights[DRIVER_BOTH] = torch.tensor([0.0, 1.0, 1.0, 0.0])
        self.register_buffer("weights", weights)
        self.seen_lengths: list[int] = []

    def embed(self, ids, values) -> np.ndarray:
        """The cell embedding of one (already cut) cell, by hand."""
        w = self.weights.numpy()
        return np.array([1.0, 0.0, 0.0, 0.0]) + (np.asarray(values, np.float64)[:, None] * w[ids]).sum(axis=0)

    def forward(self, input_ids, values=None, species_ids=None, attention_mask=None, **kwargs):
        self.seen_lengths.append(int(input_ids.shape[1]))
        weighted = (values.double() * attention_mask.double())[..., None] * self.weights[input_ids]
        cell = weighted.sum(dim=1) + torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
        hidden = torch.zeros(input_ids.shape[0], input_ids.shape[1] + 1, 4, dtype=torch.float64)
        hidden[:, 0] = cell
        return SimpleNamespace(last_hidden_state=hidden)


def driver_encoder() -> DriverEncoder:
    config = GeneCompassConfig.preset("tiny", vocab_size=VOCAB, max_position_embeddings=MAX_GENES + 1)
    return DriverEncoder(config)


def source_cells(seed: int, n: int = 30, exclude=DRIVERS) -> list[dict]:
    """Ranked cells of 6-22 genes (some longer than the model reads), without the drivers."""
    rng = np.random.default_rng(seed)
    genes = [g for g in range(4, VOCAB) if g not in exclude]
    cells = []
    for i in range(n):
        size = int(rng.integers(6, 23))
        ids = [int(g) for g in rng.choice(genes, size=size, replace=False)]
        ratios = np.sort(rng.uniform(0.2, 6.0, size=size))[::-1]
        cells.append({"input_ids": ids, "values": [float(f32(r)) for r in ratios], "length": size,
                      "species": "human" if i % 3 else "mouse"})
    return cells


# --------------------------------------------------------------------------- apply_perturbation

IDS = [5, 9, 7, 4]
VALUES = [f32(4.0), f32(3.0), f32(1.0), f32(0.5)]


def perturbed(perturbation, max_length=None):
    ids, values = apply_perturbation(IDS, VALUES, perturbation, max_length)
    assert ids.dtype == np.int64 and values.dtype == np.float32
    return ids.tolist(), values


def test_delete_closes_the_ranking_and_scale_zero_deletes():
    ids, values = perturbed(Perturbation("delete", (9,)))
    assert ids == [5, 7, 4]
    assert values.tolist() == [VALUES[0], VALUES[2], VALUES[3]]
    assert perturbed(Perturbation("scale", (9,), factor=0.0))[0] == [5, 7, 4]
    assert perturbed(Perturbation("delete", (5, 7)))[0] == [9, 4]  # a combination
    assert perturbed(Perturbation("delete", (33,)))[0] == IDS       # absent gene: nothing changes
    # The cut comes after the deletion: the fourth gene moves into a 3-gene window.
    assert perturbed(Perturbation("delete", (9,)), max_length=3)[0] == [5, 7, 4]
    assert perturbed(Perturbation("delete", (9,)), max_length=2)[0] == [5, 7]


def test_scale_multiplies_normalised_expression_and_reranks():
    ids, values = perturbed(Perturbation("scale", (5,), factor=0.5))
    assert ids == [9, 5, 7, 4]  # ratio 4 -> 2, now below gene 9 (ratio 3)
    assert np.expm1(float(values[1])) == pytest.approx(2.0, rel=1e-6)
    assert values[[0, 2, 3]].tolist() == [VALUES[1], VALUES[2], VALUES[3]]
    ids, values = perturbed(Perturbation("scale", (9,), factor=0.25))  # ratio 3 -> 0.75: below gene 7
    assert ids == [5, 7, 9, 4]
    assert np.expm1(float(values[2])) == pytest.approx(0.75, rel=1e-6)
    assert perturbed(Perturbation("scale", (33,), factor=0.5))[0] == IDS  # absent gene: nothing changes


def test_overexpression_levels_insert_set_and_tie_by_token_id():
    # "median": value log1p(1), the same as gene 7's; ties go by ascending token id.
    ids, values = perturbed(Perturbation("overexpress", (4, 30), level="median"))
    assert ids == [5, 9, 4, 7, 30]
    assert values[2] == values[3] == values[4] == np.float32(math.log1p(1.0))
    # A gene above the level is set down to it (the level is a set point).
    assert perturbed(Perturbation("overexpress", (5,)))[0] == [9, 5, 7, 4]
    # "max": the cell's highest value; the gene joins the top tie, ordered by token id.
    ids, values = perturbed(Perturbation("overexpress", (30,), level="max"))
    assert ids == [5, 30, 9, 7, 4] and values[1] == values[0]
    ids, values = perturbed(Perturbation("overexpress", (4,), level="max"))
    assert ids == [4, 5, 9, 7] and values[0] == VALUES[0]
    # A number: that multiple of the median (log1p(3) ties with gene 9's ratio 3).
    ids, values = perturbed(Perturbation("overexpress", (30,), level=3.0))
    assert ids == [5, 9, 30, 7, 4] and values[2] == f32(3.0)
    ids, _ = perturbed(Perturbation("overexpress", (8,), level=3.0))
    assert ids == [5, 8, 9, 7, 4]


def test_the_cut_follows_the_reranking():
    # Gene 4 ranks 4th: outside a 2-gene window, until overexpression brings it to the top.
    assert perturbed(Perturbation("overexpress", (4,), level="max"), max_length=2)[0] == [4, 5]
    assert perturbed(Perturbation("overexpress", (30,), level="median"), max_length=3)[0] == [5, 9, 7]
    assert perturbed(Perturbation("overexpress", (30,), level=10.0), max_length=3)[0] == [30, 5, 9]


def test_combined_scaling_of_two_genes():
    ids, values = perturbed(Perturbation("scale", (5, 9), factor=0.25))
    # ratios: 5: 4 -> 1.0, 9: 3 -> 0.75; gene 7 keeps 1.0, gene 4 keeps 0.5.
    by_gene = dict(zip(ids, np.expm1(values.astype(np.float64))))
    assert by_gene[5] == pytest.approx(1.0, rel=1e-6) and by_gene[9] == pytest.approx(0.75, rel=1e-6)
    assert ids[2:] == [9, 4] and set(ids[:2]) == {5, 7}


def test_perturbation_names_and_checks():
    assert Perturbation("delete", 12).name == "delete:12"
    assert Perturbation("scale", [12, 40], factor=0.5).name == "scale0.5:12+40"
    assert Perturbation("overexpress", (7,)).name == "overexpress_median:7"
    assert Perturbation("overexpress", (7,), level="max").name == "overexpress_max:7"
    assert Perturbation("overexpress", (7,), level=2).name == "overexpress_2:7"
    assert Perturbation("scale", np.array([3, 4]), factor=0.25).token_ids == (3, 4)
    with pytest.raises(InputError, match="unknown perturbation kind"):
        Perturbation("knockout", (7,))
    for factor in (1.0, 1.5, -0.1, None, float("nan"), True):
        with pytest.raises(InputError, match="field 'factor'"):
            Perturbation("scale", (7,), factor=factor)
    with pytest.raises(InputError, match="only 'scale' takes a factor"):
        Perturbation("delete", (7,), factor=0.5)
    for level in ("high", 0, -1.0, float("inf"), True, [1]):
        with pytest.raises(InputError, match="field 'level'"):
            Perturbation("overexpress", (7,), level=level)
    with pytest.raises(InputError, match="only 'overexpress' takes a level"):
        Perturbation("scale", (7,), factor=0.5, level="max")
    with pytest.raises(InputError, match="repeated token ids"):
        Perturbation("delete", (7, 7))
    with pytest.raises(InputError, match="no token id"):
        Perturbation("delete", ())
    with pytest.raises(InputError, match="not a token id"):
        Perturbation("delete", ("SOX2",))
    with pytest.raises(InputError, match="one value per gene"):
        apply_perturbation([1, 2], [0.5], Perturbation("delete", (1,)))


# --------------------------------------------------------------------------- knockout rows


def test_knockout_rows_keep_cells_with_every_gene_in_the_top_half():
    cells = [
        {"input_ids": [5, 9, 7, 4], "length": 4},         # top half: 5, 9
        {"input_ids": [9, 5, 7, 4, 8], "length": 5},      # 5 genes: ranks 1-2 (9, 5)
        {"input_ids": [7, 5, 9, 4, 8, 6], "length": 6},   # 6 genes: ranks 1-3 (7, 5, 9)
        {"input_ids": [5, 7, 9], "length": 3},            # 3 genes: rank 1 (5)
        {"input_ids": [9, 5, 7, 4], "length": 2},         # only 2 stored genes: rank 1 (9)
        {"input_ids": [8, 6, 4, 7], "length": 4},         # neither gene
    ]
    assert knockout_rows(cells, [5]).tolist() == [0, 1, 2, 3]
    assert knockout_rows(cells, [9]).tolist() == [0, 1, 2, 4]
    assert knockout_rows(cells, [5, 9]).tolist() == [0, 1, 2]
    import datasets

    assert knockout_rows(datasets.Dataset.from_list(cells), [5, 9]).tolist() == [0, 1, 2]  # an Arrow dataset
    assert knockout_rows(cells, (9,), top_fraction=1.0).tolist() == [0, 1, 2, 3, 4]
    # 1-based rank <= n / 4: only the 5-gene cell admits rank 1 (1.25); the 2-gene cell admits none (0.5).
    assert knockout_rows(cells, [9], top_fraction=0.25).tolist() == [1]
    assert knockout_rows(cells, [33]).dtype == np.int64 and knockout_rows(cells, [33]).size == 0
    with pytest.raises(InputError, match="top_fraction"):
        knockout_rows(cells, [5], top_fraction=0.0)


# --------------------------------------------------------------------------- cell embeddings


def test_the_perturbation_reaches_the_encoder():
    encoder = driver_encoder()
    cells = source_cells(1, n=9)
    long_cell = next(i for i, c in enumerate(cells) if c["length"] > MAX_GENES + 2)
    tail_gene = cells[long_cell]["input_ids"][MAX_GENES + 1]   # stored, but beyond what the model reads
    rows = [long_cell, 0, 3, 5]
    encoder.train()
    plain = cell_embeddings(encoder, cells, rows, batch_size=3)
    assert encoder.training  # train mode restored
    assert plain.dtype == np.float32 and plain.shape == (4, 4)
    for perturbation in (None, Perturbation("delete", (cells[0]["input_ids"][0],)),
                         Perturbation("overexpress", (DRIVER_A, tail_gene), level="max"),
                         Perturbation("scale", tuple(cells[3]["input_ids"][:2]), factor=0.25)):
        got = cell_embeddings(encoder, cells, rows, batch_size=3, perturbation=perturbation)
        for k, row in enumerate(rows):
            ids, values = np.asarray(cells[row]["input_ids"]), np.asarray(cells[row]["values"], np.float32)
            if perturbation is None:
                ids, values = ids[:MAX_GENES], values[:MAX_GENES]
            else:
                ids, values = apply_perturbation(ids, values, perturbation, MAX_GENES)
            np.testing.assert_allclose(got[k], encoder.embed(ids, values), atol=1e-5)
        if perturbation is not None:
            assert not np.allclose(got, plain)
    # Overexpressing driver A to its median moves a cell along TARGET_A by 1.5 × log1p(1) — unless
    # the cell has 16 genes above the median, which push the driver beyond what the model reads.
    raised = cell_embeddings(encoder, cells, rows, perturbation=Perturbation("overexpress", (DRIVER_A,)))
    above = [int((np.asarray(cells[row]["values"]) > np.float32(math.log1p(1.0))).sum()) for row in rows]
    expected = [1.5 * math.log1p(1.0) if n < MAX_GENES else 0.0 for n in above]
    assert 0.0 in expected and expected.count(0.0) < len(expected)
    np.testing.assert_allclose(raised[:, 1] - plain[:, 1], expected, atol=1e-5)
    assert max(encoder.seen_lengths) == MAX_GENES
    shorter = cell_embeddings(encoder, cells, rows, max_length=4)
    np.testing.assert_allclose(shorter[1], encoder.embed(cells[0]["input_ids"][:4], cells[0]["values"][:4]),
                               atol=1e-5)


def test_real_model_embeddings_do_not_depend_on_batching():
    import datasets

    model = tiny_pretraining_model(VOCAB, 8, max_genes=MAX_GENES)
    cells = source_cells(2, n=7, exclude=())
    table = datasets.Dataset.from_list(cells)
    rows = [6, 0, 2, 5, 1]
    perturbation = Perturbation("overexpress", (DRIVER_A, 20), level=2.0)
    one = cell_embeddings(model, table, rows, batch_size=1, perturbation=perturbation)
    many = cell_embeddings(model, table, rows, batch_size=4, perturbation=perturbation)
    np.testing.assert_allclose(one, many, atol=1e-5)
    assert one.shape == (5, model.config.hidden_size)
    # The same as running the encoder on the perturbed, cut cell directly; list rows give the same.
    ids, values = apply_perturbation(cells[2]["input_ids"], cells[2]["values"], perturbation, MAX_GENES)
    direct = {"input_ids": ids, "values": values, "length": len(ids), "species": cells[2]["species"]}
    with torch.no_grad():
        expected = model.genecompass(**collate_cells([direct], MAX_GENES)).pooler_output[0].numpy()
    np.testing.assert_allclose(many[2], expected, atol=1e-5)
    np.testing.assert_allclose(cell_embeddings(model.genecompass, cells, rows, perturbation=perturbation), many,
                               atol=1e-6)
    plain = cell_embeddings(model, table, rows, batch_size=2)
    assert np.abs(plain - many).max() > 1e-3
    with pytest.raises(InputError, match="not a gene token"):
        cell_embeddings(model, table, rows, perturbation=Perturbation("delete", (2,)))
    with pytest.raises(InputError, match="max_length"):
        cell_embeddings(model, table, rows, max_length=MAX_GENES + 1)
    with pytest.raises(InputError, match="field 'rows'"):
        cell_embeddings(model, table, [0, 7])


def test_state_shift_and_centroid_by_hand():
    original = np.array([[1.0, 0.0], [1.0, 1.0]])
    moved = np.array([[1.0, 1.0], [0.0, 2.0]])
    shift = state_shift(original, moved, [0.0, 3.0])
    np.testing.assert_allclose(shift, [2 ** -0.5, 1 - 2 ** -0.5])
    np.testing.assert_allclose(centroid(moved), [0.5, 1.5])
    with pytest.raises(InputError, match="field 'target'"):
        state_shift(original, moved, [0.0, 0.0])
    with pytest.raises(InputError, match="field 'perturbed'"):
        state_shift(original, moved[:1], [0.0, 1.0])


# --------------------------------------------------------------------------- analysis


@pytest.fixture(scope="module")
def world():
    encoder = driver_encoder()
    cells = source_cells(3, n=30)
    rows = np.arange(len(cells))
    source = centroid(cell_embeddings(encoder, cells, rows))
    return encoder, cells, rows, source


def test_driver_overexpression_beats_random_gene_sets(world, tmp_path):
    encoder, cells, rows, _ = world
    pool = list(range(4, VOCAB))
    table = shift_against_random(encoder, cells, rows, TARGET_A, [DRIVER_A, DRIVER_BOTH], pool=pool, n_random=20,
                                 seed=1)
    assert list(table.columns) == ["set", "kind", "row", "shift"]
    assert len(table) == 21 * len(rows)
    assert (table["kind"] == "genes").sum() == len(rows)
    random_sets = table.attrs["random_sets"]
    assert len(random_sets) == 20 and all(len(s) == 2 and not {DRIVER_A, DRIVER_BOTH} & set(s)
                                          for s in random_sets.values())
    summary = shift_summary(table)
    assert summary["empirical_p"] == 0.0
    assert summary["mannwhitney_p"] < 1e-6
    assert summary["genes_mean"] > 0.2 and summary["z_score"] > 3
    # Each cell moves towards A, except where the cell's genes above the median push the drivers out of the window.
    genes_shift = table.loc[table["kind"] == "genes", "shift"]
    assert (genes_shift >= -1e-12).all() and (genes_shift > 0.3).mean() > 0.6
    # The same seed draws the same sets; the unperturbed embeddings are computed only once.
    again = shift_against_random(encoder, cells, rows, TARGET_A, [DRIVER_A, DRIVER_BOTH], pool=pool, n_random=20,
                                 seed=1)
    pd.testing.assert_frame_equal(table, again)

    neutral = shift_against_random(encoder, cells, rows, TARGET_A, [20, 21], pool=pool, n_random=20, seed=1)
    calm = shift_summary(neutral)
    assert calm["empirical_p"] > 0.2 and abs(calm["genes_mean"]) < 0.05 and calm["mannwhitney_p"] > 0.01

    plot_state_shift(table, tmp_path / "shift.png", title="driver A")
    assert (tmp_path / "shift.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(InputError, match="field 'pool'"):
        shift_against_random(encoder, cells, rows, TARGET_A, [20, 21], pool=[20, 21, 22])
    with pytest.raises(InputError, match="not a gene token"):
        shift_against_random(encoder, cells, rows, TARGET_A, [20, 3], pool=pool)


def test_candidates_rank_the_drivers_first(world, tmp_path):
    encoder, cells, rows, source = world
    candidates = list(range(4, VOCAB))
    ranking = rank_candidates(encoder, cells, rows, {"A": TARGET_A, "B": TARGET_B}, source, candidates)
    assert list(ranking.columns) == ["token_id", "toward_A", "toward_B", "away_from_source", "score_A", "score_B",
                                     "rank_A", "rank_B", "mean_rank"]
    assert sorted(ranking["token_id"]) == candidates
    by_token = ranking.set_index("token_id")
    assert by_token.loc[DRIVER_A, "rank_A"] == 1 and by_token.loc[DRIVER_B, "rank_B"] == 1
    assert by_token.loc[DRIVER_BOTH, "rank_A"] == 2 and by_token.loc[DRIVER_BOTH, "rank_B"] == 2
    assert set(ranking["token_id"].head(3)) == set(DRIVERS)
    assert ranking["mean_rank"].is_monotonic_increasing
    np.testing.assert_allclose(ranking["score_A"], ranking["toward_A"] + ranking["away_from_source"])
    # Non-drivers move the cells towards A only a little (along the neutral axis), drivers a lot.
    others = by_token.drop(list(DRIVERS))
    assert others["toward_A"].abs().max() < 0.05 < others["toward_A"].abs().max() * 1e4
    assert by_token.loc[DRIVER_A, "toward_A"] > 0.3 and by_token.loc[DRIVER_B, "toward_B"] > 0.3
    assert top_intersection(ranking, 2) == [DRIVER_BOTH]
    assert top_intersection(ranking, 1) == []
    assert set(top_intersection(ranking, 3)) == set(DRIVERS)

    plot_candidates(ranking, tmp_path / "candidates.png", top_k=5)
    assert (tmp_path / "candidates.png").stat().st_size > 1000
    named = ranking.assign(gene=[f"G{t}" for t in ranking["token_id"]]).set_index("gene", drop=False)
    plot_candidates(named, tmp_path / "named.png", top_k=5, title="named")
    assert (tmp_path / "named.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(InputError, match="not a gene token"):
        rank_candidates(encoder, cells, rows, {"A": TARGET_A}, source, [DRIVER_A, VOCAB])
    with pytest.raises(InputError, match="not a gene token"):
        rank_candidates(encoder, cells, rows, {"A": TARGET_A}, source, [0, DRIVER_A])
    with pytest.raises(InputError, match="field 'level'"):
        rank_candidates(encoder, cells, rows, {"A": TARGET_A}, source, [DRIVER_A], level="high")
    with pytest.raises(InputError, match="top_k"):
        top_intersection(ranking, 0)


def test_gene_set_shift_tests_find_the_shifted_set(tmp_path):
    rng = np.random.default_rng(0)
    targets, housekeeping, other = range(100, 130), range(200, 240), range(300, 400)
    shifts = pd.Series({**{t: 0.3 + 0.05 * rng.standard_normal() for t in targets},
                        **{t: 0.1 + 0.05 * rng.standard_normal() for t in housekeeping},
                        **{t: 0.1 + 0.05 * rng.standard_normal() for t in other}})
    table = gene_set_shift_tests(shifts, {"targets": list(targets) + [999], "housekeeping": list(housekeeping)})
    assert list(zip(table["set"], table["versus"])) == [("targets", "other"), ("housekeeping", "other"),
                                                       ("targets", "housekeeping")]
    rows = table.set_index(["set", "versus"])
    assert rows.loc[("targets", "other"), "n_set"] == 30 and rows.loc[("targets", "other"), "n_versus"] == 100
    for pair in (("targets", "other"), ("targets", "housekeeping")):
        assert rows.loc[pair, "mannwhitney_p"] < 1e-8 and rows.loc[pair, "welch_p"] < 1e-8
        assert rows.loc[pair, "mean_set"] > rows.loc[pair, "mean_versus"] + 0.1
    # Housekeeping and other genes come from one distribution.
    assert rows.loc[("housekeeping", "other"), "mannwhitney_p"] > 0.05
    assert rows.loc[("housekeeping", "other"), "welch_p"] > 0.05
    assert rows.loc[("targets", "other"), "median_set"] == pytest.approx(shifts.loc[list(targets)].median())

    table = pd.DataFrame({"tf": ["T1"] * len(shifts) + ["T2"] * 3, "set": ["other"] * len(shifts) + ["targets"] * 3,
                          "shift": list(shifts) + [0.1, 0.2, 0.3]})
    table.loc[:29, "set"] = "targets"
    plot_deletion_shifts(table, tmp_path / "deletion.png", title="two TFs")
    assert (tmp_path / "deletion.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(InputError, match="no gene of any set"):
        gene_set_shift_tests(shifts, {"targets": [999]})
    with pytest.raises(InputError, match="'other'"):
        gene_set_shift_tests(shifts, {"other": [100]})


class GeneOutputEncoder(nn.Module):
    """Gene output = value × a fixed random vector of the gene; the species position is zero."""

    def __init__(self):
        super().__init__()
        self.config = GeneCompassConfig.preset("tiny", vocab_size=VOCAB, max_position_embeddings=MAX_GENES + 1)
        self.register_buffer("weights", torch.from_numpy(np.random.default_rng(3).normal(size=(VOCAB, 4))))

    def forward(self, input_ids, values=None, species_ids=None, attention_mask=None, **kwargs):
        genes = values.double()[..., None] * self.weights[input_ids]
        return SimpleNamespace(last_hidden_state=torch.cat([torch.zeros_like(genes[:, :1]), genes], dim=1))


def test_mean_pooling_leaves_the_perturbed_genes_out():
    encoder = GeneOutputEncoder()
    weights = encoder.weights.numpy()
    cells = source_cells(4, n=6)
    rows = [0, 1, 2]
    gene = cells[0]["input_ids"][1]
    scale = Perturbation("scale", (gene,), factor=0.5)

    def by_hand(ids, values):
        kept = [(g, v) for g, v in zip(ids, values) if g != gene]
        return np.mean([v * weights[g] for g, v in kept], axis=0)

    plain = perturb_module.cell_embeddings(encoder, cells, rows, exclude=(gene,))
    scaled = perturb_module.cell_embeddings(encoder, cells, rows, perturbation=scale)
    for k, row in enumerate(rows):
        ids, values = cells[row]["input_ids"], np.asarray(cells[row]["values"], np.float32)
        np.testing.assert_allclose(plain[k], by_hand(ids[:MAX_GENES], values[:MAX_GENES]), rtol=1e-5)
        new_ids, new_values = apply_perturbation(ids, values, scale, MAX_GENES)
        np.testing.assert_allclose(scaled[k], by_hand(new_ids, new_values), rtol=1e-5)
    # without the exclusion the gene's own output counts
    assert not np.allclose(perturb_module.cell_embeddings(encoder, cells, [0]), plain[:1])
    with pytest.raises(InputError, match="pooling"):
        perturb_module.cell_embeddings(encoder, cells, rows, pooling="max")


def test_state_shift_around_an_origin():
    """Around the states' midpoint, moving towards the target is moving away from the source."""
    source, target = np.array([10.0, 1.0]), np.array([10.0, -1.0])
    origin = (source + target) / 2
    before = np.array([[10.0, 0.8]])
    after = np.array([[10.0, -0.2]])
    # raw cosines hardly move: every vector points along the shared first axis
    assert abs(state_shift(before, after, target)[0]) < 0.02
    towards = state_shift(before, after, target, origin)[0]
    assert towards > 0.5
    assert state_shift(before, after, source, origin)[0] == pytest.approx(-towards)
    with pytest.raises(InputError, match="origin"):
        state_shift(before, after, target, np.zeros(3))


def test_demo_truth_follows_the_network(tmp_path):
    """The demo's dosage labels rank TFs by how far half their activity reaches in the cell types; drivers are
    the programmes'."""
    from genecompass.gene_sets import read_drivers, read_gene_list
    from genecompass.simulate.insilico import dosage_reach, write_insilico_truth
    from genecompass.simulate.world import build_world

    world = build_world(7, {"n_human_genes": 300, "n_mouse_genes": 290, "n_tfs": 20, "n_families": 8,
                            "cells_per_sample": 20})
    reach = dosage_reach(world)
    # every TF has targets, so its reach when driven alone is positive, and it grows with the out-degree
    assert (reach["reach_alone"] > 0).all() and reach["reach_alone"].corr(reach["n_targets"]) > 0.5
    # in the cell types, a TF no programme turns on reaches nothing; one that is on reaches at least its own mRNA
    active = reach["active_cell_types"] > 0
    assert (reach.loc[~active, "reach"] == 0).all() and (reach.loc[active, "reach"] > 0).all()
    # a driver at full programme input reaches exactly as far as when driven alone
    drivers_k = np.flatnonzero((world.programs >= 1).any(axis=0))
    alone = world.programs[:, drivers_k].max(axis=0) == 1
    assert (reach.loc[drivers_k, "reach"] >= reach.loc[drivers_k, "reach_alone"] - 1e-9)[alone].all()
    paths = write_insilico_truth(tmp_path, seed=7, world_params={"n_human_genes": 300, "n_mouse_genes": 290,
                                                                 "n_tfs": 20, "n_families": 8,
                                                                 "cells_per_sample": 20})
    labels = pd.read_csv(paths["labels"], dtype=str).fillna("")
    by_name = reach.set_index("gene_name")["reach"]
    sensitive = by_name[labels.loc[labels["dosage_sensitive"] == "Yes", "gene_name"]]
    insensitive = by_name[labels.loc[labels["dosage_insensitive"] == "Yes", "gene_name"]]
    assert len(sensitive) == len(insensitive) == 8 and sensitive.min() >= insensitive.max()
    drivers = read_drivers(paths["drivers"], "human")
    programmes = world.programs >= 1
    for t, state in enumerate(world.cell_types):
        assert sorted(drivers[state]) == sorted(world.tfs["human_symbol"].to_numpy()[programmes[t]])
    housekeeping = read_gene_list(paths["housekeeping"])
    regulated = set(world.networks["human"]["target"])
    assert housekeeping and not set(housekeeping) & regulated
