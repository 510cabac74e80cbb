"""Tests of the in-silico deletion check (genecompass.tasks.grn.deletion)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_pretraining_model, torch_threads
from torch import nn

from genecompass.corpus import collate_cells
from genecompass.errors import InputError
from genecompass.model import GeneCompassConfig, GeneCompassForPretraining
from genecompass.tasks.grn.deletion import deletion_precision, deletion_shift

VOCAB = 40
KDIM = 8
TF = 7
TARGETS = [12, 15, 21]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with torch_threads(1):
        yield


class TargetPushEncoder(nn.Module):
    """A hand-built encoder: gene g's output is the one-hot of g, plus a fixed extra direction
    when g is one of the TF's targets and the TF is in the cell. Deleting the TF therefore
    moves exactly the targets (each by 1 − 1/√2) and nothing else, wherever they rank."""

    def __init__(self, config: GeneCompassConfig, tf: int, targets):
        super().__init__()
        self.config = config
        self.tf = tf
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the module a device
        self.register_buffer("is_target", torch.zeros(config.vocab_size, dtype=torch.bool))
        self.is_target[list(targets)] = True

    def forward(self, input_ids, values=None, species_ids=None, attention_mask=None, **kwargs):
        width = self.config.vocab_size + 1
        genes = F.one_hot(input_ids, width).double()
        tf_in_cell = ((input_ids == self.tf) & attention_mask.bool()).any(dim=1)
        pushed = self.is_target[input_ids] & tf_in_cell[:, None]
        genes[..., -1] += pushed.double()
        species = torch.zeros(input_ids.shape[0], 1, width, dtype=torch.float64)
        return SimpleNamespace(last_hidden_state=torch.cat([species, genes], dim=1))


def rows(seed: int, n: int = 12, with_tf_every: int = 2, companions=()) -> list[dict]:
    """Ranked cells of 5-10 genes from tokens 4-35; every ``with_tf_every``-th cell has the TF somewhere,
    and the TF cells take turns to hold each of ``companions``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        size = int(rng.integers(5, 10))
        genes = [int(g) for g in rng.choice([g for g in range(4, 36) if g != TF], size=size, replace=False)]
        if i % with_tf_every == 0:
            genes.insert(int(rng.integers(0, size + 1)), TF)
            companion = companions[(i // with_tf_every) % len(companions)] if companions else None
            if companion is not None and companion not in genes:
                genes[-1 if genes[-1] != TF else 0] = companion
        values = sorted(rng.uniform(0.2, 3.0, size=len(genes)).tolist(), reverse=True)
        out.append({"input_ids": genes, "values": values, "length": len(genes),
                    "species": "human" if i % 3 else "mouse"})
    return out


@pytest.fixture(scope="module")
def model() -> GeneCompassForPretraining:
    return tiny_pretraining_model(VOCAB, KDIM)


def test_deletion_moves_only_the_targets_of_a_hand_built_encoder():
    config = GeneCompassConfig.preset("tiny", vocab_size=VOCAB, max_position_embeddings=17)
    encoder = TargetPushEncoder(config, TF, TARGETS)
    cells = rows(0, n=40, companions=TARGETS)
    shifts = deletion_shift(encoder, collate_cells(cells, 16), TF, batch_size=7)
    moved = shifts.set_index("token_id")["mean_shift"]
    present = set(moved.index)
    assert TF not in present
    for token in present:
        expected = 1 - 2 ** -0.5 if token in TARGETS else 0.0
        assert moved[token] == pytest.approx(expected, abs=1e-9)
    assert shifts.attrs["n_cells"] == sum(TF in c["input_ids"] for c in cells)
    assert set(shifts["token_id"].head(len(TARGETS))) == set(TARGETS)

    precision = deletion_precision(shifts, TARGETS + [38], k_values=[1, 3, 10], n_random=500, seed=0)
    by_k = precision.set_index("k")
    assert by_k.loc[1, "precision"] == 1.0 and by_k.loc[3, "precision"] == 1.0
    assert by_k.loc[10, "precision"] == pytest.approx(3 / 10)
    assert (precision["random_precision"] < precision["precision"]).all()
    n = len(shifts)
    assert by_k.loc[3, "expected_random"] == pytest.approx(3 / n)  # token 38 is in no cell: not a candidate
    assert by_k.loc[3, "random_precision"] == pytest.approx(3 / n, abs=0.05)


def test_deletion_shift_matches_cell_by_cell_removal(model):
    cells = rows(1, n=8)
    batch = collate_cells(cells, 16)
    shifts = deletion_shift(model, batch, TF, batch_size=3)
    sums, counts = {}, {}
    for cell in cells:
        if TF not in cell["input_ids"]:
            continue
        keep = [i for i, g in enumerate(cell["input_ids"]) if g != TF]
        deleted = {"input_ids": [cell["input_ids"][i] for i in keep], "values": [cell["values"][i] for i in keep],
                   "length": len(keep), "species": cell["species"]}
        with torch.no_grad():
            before = model(**collate_cells([cell], 16)).last_hidden_state[0, 1:]
            after = model(**collate_cells([deleted], 16)).last_hidden_state[0, 1:]
        for new, old in enumerate(keep):
            token = cell["input_ids"][old]
            shift = 1 - F.cosine_similarity(before[old], after[new], dim=0).item()
            sums[token] = sums.get(token, 0.0) + shift
            counts[token] = counts.get(token, 0) + 1
    got = shifts.set_index("token_id")
    assert sorted(got.index) == sorted(sums)
    for token, total in sums.items():
        assert got.loc[token, "mean_shift"] == pytest.approx(total / counts[token], abs=1e-5)
        assert got.loc[token, "n_cells"] == counts[token]
    assert shifts["mean_shift"].is_monotonic_decreasing
    assert shifts["mean_shift"].max() > 1e-4
    assert deletion_shift(model, batch, TF, batch_size=8).equals(shifts)  # batching does not matter


def test_deletion_inputs_are_checked(model):
    batch = collate_cells(rows(2, n=4, with_tf_every=100)[1:], 16)
    with pytest.raises(InputError, match="occurs in none"):
        deletion_shift(model, batch, TF)
    with pytest.raises(InputError, match="not a gene token"):
        deletion_shift(model, batch, 2)
    with pytest.raises(InputError, match="no 'species_ids'"):
        deletion_shift(model, {"input_ids": batch["input_ids"], "values": batch["values"]}, TF)


def test_deletion_precision_by_hand_and_its_errors():
    shifts = pd.Series({10: 0.9, 11: 0.8, 12: 0.8, 13: 0.1, 14: 0.0})
    table = deletion_precision(shifts, [11, 14, 99], k_values=[1, 2, 3, 9], n_random=2000, seed=4)
    assert table["precision"].tolist() == pytest.approx([0.0, 0.5, 1 / 3, 0.4])
    assert table["k_used"].tolist() == [1, 2, 3, 5]
    assert table["n_targets"].eq(2).all() and table["expected_random"].eq(0.4).all()
    assert table["random_precision"].tolist() == pytest.approx([0.4] * 4, abs=0.03)
    assert table.loc[3, "random_sd"] == pytest.approx(0.0)  # k covers every candidate
    assert table.equals(deletion_precision(shifts, [11, 14, 99], k_values=[1, 2, 3, 9], n_random=2000, seed=4))
    with pytest.raises(InputError, match="none of the 1 known targets"):
        deletion_precision(shifts, [99])
    with pytest.raises(InputError, match="positive k"):
        deletion_precision(shifts, [11], k_values=[0])
