"""Tests of the GeneCompass model (genecompass.model)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_knowledge, torch_threads
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from genecompass.corpus import IGNORE_INDEX, collate_cells, mask_batch
from genecompass.dictionary import MASK_TOKEN_ID, PAD_TOKEN_ID, SPECIES_TOKEN_IDS
from genecompass.knowledge.assemble import KINDS
from genecompass.model import (
    GeneCompassConfig,
    GeneCompassForPretraining,
    GeneCompassForSequenceClassification,
    GeneCompassForTokenClassification,
    GeneCompassModel,
)

VOCAB = 48
N_SPECIAL = 4
KDIM = 8


def tiny_config(**overrides) -> GeneCompassConfig:
    kwargs = {"vocab_size": VOCAB, "max_position_embeddings": 33, "knowledge_dim": KDIM}
    kwargs.update(overrides)
    return GeneCompassConfig.preset("tiny", **kwargs)



def random_batch(batch=3, length=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(N_SPECIAL, VOCAB, (batch, length), generator=g)
    values = torch.rand(batch, length, generator=g) * 3
    species = torch.tensor([SPECIES_TOKEN_IDS["human"], SPECIES_TOKEN_IDS["mouse"]] * batch)[:batch]
    return ids, values, species


def model_with_knowledge(cls=GeneCompassModel, **overrides):
    torch.manual_seed(0)
    model = cls(tiny_config(**overrides))
    model.set_knowledge(random_knowledge(VOCAB, KDIM))
    return model.eval()


# --------------------------------------------------------------------------- config


def test_presets_and_validation():
    assert GeneCompassConfig.preset("small").num_hidden_layers == 6
    base = GeneCompassConfig.preset("base")
    assert (base.num_hidden_layers, base.num_attention_heads, base.hidden_size) == (12, 12, 768)
    assert base.hidden_dropout_prob == base.attention_probs_dropout_prob == 0.02
    assert base.layer_norm_eps == 1e-12 and base.initializer_range == 0.02
    assert base.knowledge_dim == 768 and base.knowledge_kinds == list(KINDS)
    assert base.species_token_ids == SPECIES_TOKEN_IDS
    assert (base.pad_token_id, base.mask_token_id) == (PAD_TOKEN_ID, MASK_TOKEN_ID)
    assert GeneCompassConfig.preset("tiny", hidden_size=64).hidden_size == 64
    with pytest.raises(ValueError):
        GeneCompassConfig.preset("huge")
    with pytest.raises(ValueError):
        GeneCompassConfig(knowledge_kinds=["grn", "pathway"])
    with pytest.raises(ValueError):
        GeneCompassConfig(hidden_size=30, num_attention_heads=4)


# --------------------------------------------------------------------------- shapes


def test_head_shapes_and_species_token_first():
    ids, values, species = random_batch(batch=3, length=10)
    base = model_with_knowledge()
    out = base(ids, values, species, output_hidden_states=True)
    assert out.last_hidden_state.shape == (3, 11, 32)
    assert torch.equal(out.pooler_output, out.last_hidden_state[:, 0])
    assert len(out.hidden_states) == 1 + base.config.num_hidden_layers
    # Position 0 is the species token: swapping species changes the cell embedding.
    other = base(ids, values, 5 - species).last_hidden_state
    assert not torch.allclose(other[:, 0], out.last_hidden_state[:, 0])
    with pytest.raises(ValueError):
        base(ids, values, torch.tensor([0, 1, 0]))  # not species token ids

    pre = model_with_knowledge(GeneCompassForPretraining)
    out = pre(ids, values, species)
    assert out.logits.shape == (3, 10, VOCAB) and out.value_predictions.shape == (3, 10)
    assert out.loss is None

    seq = model_with_knowledge(GeneCompassForSequenceClassification, num_labels=5)
    out = seq(ids, values, species, labels=torch.tensor([0, 4, 2]))
    assert out.logits.shape == (3, 5) and out.loss.ndim == 0 and torch.isfinite(out.loss)

    tok = model_with_knowledge(GeneCompassForTokenClassification, num_labels=3)
    labels = torch.randint(0, 3, (3, 10))
    out = tok(ids, values, species, labels=labels)
    assert out.logits.shape == (3, 10, 3) and torch.isfinite(out.loss)


def test_pre_layer_norm_variant_runs():
    ids, values, species = random_batch()
    model = model_with_knowledge(pre_layer_norm=True)
    assert model.final_LayerNorm is not None
    assert model(ids, values, species).last_hidden_state.shape == (3, 11, 32)


def test_too_long_cell_rejected():
    model = model_with_knowledge()
    ids, values, species = random_batch(length=40)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(ids, values, species)


# --------------------------------------------------------------------------- padding


@pytest.mark.parametrize("pre_ln", [False, True])
def test_padding_does_not_change_real_positions(pre_ln):
    model = model_with_knowledge(GeneCompassForPretraining, pre_layer_norm=pre_ln)
    rows = [
        {"input_ids": [5, 9, 12, 30, 7], "values": [2.0, 1.5, 1.2, 0.7, 0.1], "length": 5, "species": "human"},
        {"input_ids": list(range(10, 22)), "values": list(np.linspace(3, 0.2, 12)), "length": 12,
         "species": "mouse"},
    ]
    alone = collate_cells(rows[:1], max_length=32)
    batch = collate_cells(rows, max_length=32)
    assert alone["input_ids"].shape == (1, 5) and batch["input_ids"].shape == (2, 12)
    with torch.no_grad():
        a = model(**alone)
        b = model(**batch)
    assert torch.allclose(a.last_hidden_state[0], b.last_hidden_state[0, :6], atol=1e-5)
    assert torch.allclose(a.logits[0], b.logits[0, :5], atol=1e-5)
    assert torch.allclose(a.value_predictions[0], b.value_predictions[0, :5], atol=1e-5)


def test_collate_cells_pads_cuts_and_maps_species():
    rows = [
        {"input_ids": np.array([5, 6, 7], dtype=np.int32), "values": [1.0, 0.5, 0.2], "length": 3,
         "species": "mouse"},
        {"input_ids": list(range(4, 14)), "values": [0.1] * 10, "length": 10, "species": "human"},
    ]
    out = collate_cells(rows, max_length=6)
    assert out["input_ids"].shape == (2, 6) and out["input_ids"].dtype == torch.long
    assert out["input_ids"][0].tolist() == [5, 6, 7, PAD_TOKEN_ID, PAD_TOKEN_ID, PAD_TOKEN_ID]
    assert out["values"][0].tolist()[3:] == [0.0, 0.0, 0.0]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0], [1] * 6]
    assert out["input_ids"][1].tolist() == list(range(4, 10))  # cut to the top-ranked genes
    assert out["species_ids"].tolist() == [SPECIES_TOKEN_IDS["mouse"], SPECIES_TOKEN_IDS["human"]]
    with pytest.raises(ValueError, match="species"):
        collate_cells([{**rows[0], "species": "fly"}], max_length=6)


# --------------------------------------------------------------------------- ablations


@pytest.mark.parametrize("use_values,kinds", [(True, list(KINDS)), (False, list(KINDS)), (True, []),
                                              (False, []), (True, ["grn", "family"])])
def test_ablation_switches_change_input_width(use_values, kinds):
    model = model_with_knowledge(use_values=use_values, knowledge_kinds=kinds)
    emb = model.embeddings
    assert emb.input_width == (1 + int(use_values) + len(kinds)) * 32
    assert emb.fusion.in_features == emb.input_width
    assert sorted(emb.knowledge_projections) == sorted(kinds)
    buffers = {name for name, _ in model.named_buffers()}
    assert buffers == {f"embeddings.knowledge_{k}" for k in kinds} | {f"embeddings.knowledge_{k}_mask" for k in kinds}
    ids, values, species = random_batch()
    out = model(ids, values, species).last_hidden_state
    assert out.shape == (3, 11, 32) and torch.isfinite(out).all()
    changed = model(ids, values * 2 + 1, species).last_hidden_state
    assert torch.allclose(out, changed) != use_values  # values matter iff they are switched on


# --------------------------------------------------------------------------- knowledge


def test_knowledge_buffers_are_used_and_checked():
    model = model_with_knowledge()
    ids, values, species = random_batch()
    token = int(ids[0, 3])
    before = model(ids, values, species).last_hidden_state
    knowledge = random_knowledge(VOCAB, KDIM)
    knowledge.masks["promoter"][token] = True
    knowledge.matrices["promoter"][token] += 5.0
    model.set_knowledge(knowledge)
    assert torch.allclose(model.embeddings.knowledge_promoter[token],
                          torch.from_numpy(knowledge.matrices["promoter"][token]))
    after = model(ids, values, species).last_hidden_state
    assert not torch.allclose(before, after)
    # An uncovered token contributes zeros whatever its stored row.
    knowledge.masks["promoter"][token] = False
    model.set_knowledge(knowledge)
    assert torch.count_nonzero(model.embeddings.knowledge_promoter[token]) == 0
    assert torch.count_nonzero(model.embeddings.knowledge(  # special tokens never carry knowledge
        "grn", torch.tensor([PAD_TOKEN_ID, MASK_TOKEN_ID, *SPECIES_TOKEN_IDS.values()]))) == 0

    with pytest.raises(ValueError, match="dim"):
        model.set_knowledge(random_knowledge(VOCAB, KDIM + 1))
    with pytest.raises(ValueError, match="shape"):
        model.set_knowledge(random_knowledge(VOCAB + 2, KDIM))
    partial = random_knowledge(VOCAB, KDIM)
    del partial.matrices["coexpression"]
    with pytest.raises(ValueError, match="coexpression"):
        model.set_knowledge(partial)


def test_masked_positions_hide_their_id_value_and_knowledge():
    model = model_with_knowledge(GeneCompassForPretraining)
    ids, values, species = random_batch(batch=2, length=12, seed=3)
    ids[:, 4] = 40  # token 40 appears only at position 4
    ids[ids == 40] = 41
    ids[:, 4] = 40
    g = torch.Generator().manual_seed(0)
    attention_mask = torch.ones_like(ids)
    for _ in range(2000):  # a deterministic draw that masks position 4 in both cells
        m_ids, m_values, _, _, value_mask = mask_batch(ids, values, attention_mask, 0.15, g)
        if value_mask[:, 4].all():
            break
    else:
        pytest.fail("no draw masked position 4")
    assert (m_ids[:, 4] == MASK_TOKEN_ID).all() and (m_values[:, 4] == 0).all()
    with torch.no_grad():
        before = model(m_ids, m_values, species).logits
        knowledge = random_knowledge(VOCAB, KDIM)
        for kind in KINDS:
            knowledge.masks[kind][40] = True
            knowledge.matrices[kind][40] = 100.0
        model.set_knowledge(knowledge)
        after = model(m_ids, m_values, species).logits
        assert torch.equal(before, after)  # the masked gene's knowledge is not seen
        # ...but it is seen when the gene is not masked.
        assert not torch.allclose(model(ids, values, species).logits, model_with_knowledge(
            GeneCompassForPretraining)(ids, values, species).logits)


# --------------------------------------------------------------------------- masking and loss


def test_mask_batch_masks_fifteen_percent_of_real_genes_only():
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(20, 101, (64,), generator=g)
    ids = torch.randint(N_SPECIAL, VOCAB, (64, 100), generator=g)
    values = torch.rand(64, 100, generator=g) + 0.1
    attention_mask = torch.arange(100)[None, :] < lengths[:, None]
    ids[~attention_mask] = PAD_TOKEN_ID
    values[~attention_mask] = 0.0
    out = mask_batch(ids, values, attention_mask, 0.15, torch.Generator().manual_seed(7))
    m_ids, m_values, id_labels, value_labels, value_mask = out
    assert not (value_mask & ~attention_mask).any()  # padding never masked
    per_cell = value_mask.sum(1)
    assert torch.equal(per_cell, torch.round(lengths * 0.15).long().clamp(min=1))
    assert abs(value_mask.sum().item() / lengths.sum().item() - 0.15) < 0.01
    assert (m_ids[value_mask] == MASK_TOKEN_ID).all() and (m_values[value_mask] == 0).all()
    assert torch.equal(m_ids[~value_mask], ids[~value_mask])
    assert torch.equal(m_values[~value_mask], values[~value_mask])
    assert torch.equal(id_labels[value_mask], ids[value_mask]) and (id_labels[~value_mask] == IGNORE_INDEX).all()
    assert torch.equal(value_labels, values)
    assert not torch.isin(m_ids, torch.tensor(list(SPECIES_TOKEN_IDS.values()))).any()
    # Deterministic given the generator, different with another seed.
    again = mask_batch(ids, values, attention_mask, 0.15, torch.Generator().manual_seed(7))
    assert all(torch.equal(a, b) for a, b in zip(out, again))
    other = mask_batch(ids, values, attention_mask, 0.15, torch.Generator().manual_seed(8))
    assert not torch.equal(other[4], value_mask)


@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0])
def test_loss_is_weighted_sum(beta):
    model = model_with_knowledge(GeneCompassForPretraining, beta=beta)
    ids, values, species = random_batch(batch=4, length=20)
    m_ids, m_values, id_labels, value_labels, value_mask = model.mask(ids, values, None,
                                                                      torch.Generator().manual_seed(0))
    out = model(m_ids, m_values, species, id_labels=id_labels, value_labels=value_labels,
                value_label_mask=value_mask)
    expected_id = torch.nn.functional.cross_entropy(out.logits[value_mask], ids[value_mask])
    expected_value = ((out.value_predictions[value_mask] - values[value_mask]) ** 2).mean()
    assert torch.allclose(out.id_loss, expected_id, atol=1e-6)
    assert torch.allclose(out.value_loss, expected_value, atol=1e-6)
    assert torch.allclose(out.loss, (1 - beta) * out.id_loss + beta * out.value_loss, atol=1e-6)
    out.loss.backward()


def test_masked_only_logits_match_full_logits():
    model = model_with_knowledge(GeneCompassForPretraining, beta=0.3).eval()
    ids, values, species = random_batch(batch=4, length=20)
    m_ids, m_values, id_labels, value_labels, value_mask = model.mask(ids, values, None,
                                                                      torch.Generator().manual_seed(1))
    kwargs = dict(id_labels=id_labels, value_labels=value_labels, value_label_mask=value_mask)
    full = model(m_ids, m_values, species, **kwargs)
    masked = model(m_ids, m_values, species, logits_mask=value_mask, **kwargs)
    assert masked.logits.shape == (int(value_mask.sum()), VOCAB)
    assert torch.allclose(masked.logits, full.logits[value_mask], atol=1e-5)
    assert torch.allclose(masked.loss, full.loss, atol=1e-6)
    with pytest.raises(ValueError, match="logits_mask has shape"):
        model(m_ids, m_values, species, logits_mask=value_mask[:, :5])


# --------------------------------------------------------------------------- save / load


def test_save_and_load_round_trip(tmp_path: Path):
    model = model_with_knowledge(GeneCompassForPretraining, knowledge_kinds=["grn", "promoter", "family"],
                                 beta=0.25)
    ids, values, species = random_batch()
    model.save_pretrained(tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert "model.safetensors" in files and "config.json" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]

    loaded = GeneCompassForPretraining.from_pretrained(tmp_path).eval()
    assert loaded.config.knowledge_kinds == ["grn", "promoter", "family"] and loaded.config.beta == 0.25
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, dict(loaded.named_buffers())[name]), name
    assert loaded.genecompass.embeddings.knowledge_grn_mask.dtype == torch.bool
    with torch.no_grad():
        a, b = model(ids, values, species), loaded(ids, values, species)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    # Same weights; allow last-bit float differences from memory layout.
    assert torch.allclose(a.logits, b.logits, atol=1e-6)
    assert torch.allclose(a.value_predictions, b.value_predictions, atol=1e-6)

    assert isinstance(AutoConfig.from_pretrained(tmp_path), GeneCompassConfig)
    base = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(base, GeneCompassModel)
    with torch.no_grad():
        assert torch.allclose(base(ids, values, species).last_hidden_state, a.last_hidden_state, atol=1e-6)
    classifier = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=3)
    assert isinstance(classifier, GeneCompassForSequenceClassification)
    assert torch.equal(classifier.genecompass.embeddings.knowledge_family,
                       model.genecompass.embeddings.knowledge_family)


# --------------------------------------------------------------------------- learning


def program_cells(n_cells: int, generator: torch.Generator, n_genes: int = 12):
    """Cells expressing n_genes of one of two 20-gene programs; values = gene level + noise, ranked."""
    levels = torch.linspace(3.0, 0.5, 20)
    programs = [torch.arange(4, 24), torch.arange(24, 44)]
    ids = torch.empty(n_cells, n_genes, dtype=torch.long)
    values = torch.empty(n_cells, n_genes)
    species = torch.empty(n_cells, dtype=torch.long)
    for i in range(n_cells):
        p = int(torch.randint(0, 2, (1,), generator=generator))
        chosen = torch.randperm(20, generator=generator)[:n_genes]
        v = levels[chosen] + 0.05 * torch.randn(n_genes, generator=generator)
        order = v.argsort(descending=True)
        ids[i], values[i] = programs[p][chosen][order], v[order]
        species[i] = SPECIES_TOKEN_IDS["human" if p == 0 else "mouse"] if i % 2 else SPECIES_TOKEN_IDS["human"]
    return ids, values, species


def evaluate(model, ids, values, species):
    m = mask_batch(ids, values, None, 0.15, torch.Generator().manual_seed(123))
    with torch.no_grad():
        out = model(m[0], m[1], species, id_labels=m[2], value_labels=m[3], value_label_mask=m[4])
    return out.id_loss.item(), out.value_loss.item(), m


@pytest.fixture
def one_thread():
    """Tiny matrices train fastest on one thread (and do not stall on a busy machine)."""
    with torch_threads(1):
        yield


def test_training_on_two_programs_lowers_losses(one_thread):
    torch.manual_seed(0)
    config = tiny_config(knowledge_kinds=["grn"], hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                         beta=0.5)
    model = GeneCompassForPretraining(config)
    model.set_knowledge(random_knowledge(VOCAB, KDIM, seed=1))
    data_gen = torch.Generator().manual_seed(0)
    eval_ids, eval_values, eval_species = program_cells(256, data_gen)
    model.eval()
    id_before, _, _ = evaluate(model, eval_ids, eval_values, eval_species)

    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    mask_gen = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(300):
        ids, values, species = program_cells(32, data_gen)
        m_ids, m_values, id_labels, value_labels, value_mask = model.mask(ids, values, None, mask_gen)
        loss = model(m_ids, m_values, species, id_labels=id_labels, value_labels=value_labels,
                     value_label_mask=value_mask).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    id_after, value_after, m = evaluate(model, eval_ids, eval_values, eval_species)
    print(f"id loss {id_before:.3f} -> {id_after:.3f}")
    assert id_after < 0.7 * id_before, (id_before, id_after)
    assert id_before > 0.8 * math.log(VOCAB)
    masked_values = m[3][m[4]]
    mean_baseline = ((masked_values - masked_values.mean()) ** 2).mean().item()
    print(f"value MSE {value_after:.4f} vs mean baseline {mean_baseline:.4f}")
    assert value_after < 0.5 * mean_baseline, (value_after, mean_baseline)
