"""Exact import of the released GeneCompass checkpoints, against a reference forward written from the
release's formulas with transformers' own BERT encoder, and the export → import round trip."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertEncoder

from genecompass.errors import InputError
from genecompass.model import GeneCompassForPretraining, GeneCompassModel
from genecompass.model.released import (
    RELEASED_KINDS,
    load_released,
    released_state_dict,
    save_released,
)

VOCAB, D, HEADS, LAYERS, FFN, MAX_POS = 14, 16, 2, 2, 32, 12
HUMAN_TOKENS, MOUSE_TOKENS = list(range(2, 8)), list(range(8, 14))
HOMOLOGS = {8: 2, 9: 3, 10: 5}     # mouse token -> human token; 11..13 have no homolog
ALPHA = 0.7                        # an embedding warm-up factor short of 1, so that it shows


def released_config_json(**extra) -> dict:
    return {"architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": VOCAB, "hidden_size": D,
            "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "intermediate_size": FFN,
            "hidden_act": "gelu", "hidden_dropout_prob": 0.02, "attention_probs_dropout_prob": 0.02,
            "max_position_embeddings": MAX_POS, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
            "initializer_range": 0.02, "pad_token_id": 0, "use_values": True, "use_promoter": True,
            "use_co_exp": True, "use_gene_family": True, "use_peca_grn": True, "use_cls_token": True,
            "warmup_steps": 10, "emb_warmup_steps": 100, **extra}


def random_released_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights and knowledge under the key names of the release's BertForMaskedLM."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.3):
        return torch.randn(*shape, generator=g) * scale

    def layer_norm(prefix):
        return {f"{prefix}.weight": 1 + rand(D, scale=0.1), f"{prefix}.bias": rand(D, scale=0.1)}

    def linear(prefix, n_in, n_out):
        return {f"{prefix}.weight": rand(n_out, n_in), f"{prefix}.bias": rand(n_out, scale=0.1)}

    sd = {"bert.embeddings.word_embeddings.weight": rand(VOCAB, D),
          "bert.embeddings.position_embeddings.weight": rand(MAX_POS, D),
          "bert.embeddings.token_type_embeddings.weight": rand(2, D),
          "bert.embeddings.position_ids": torch.arange(MAX_POS)[None],
          "bert.cls_embedding.weight": rand(2, D, scale=1.0),
          "emb_warmup.alpha": torch.tensor(ALPHA), "emb_warmup.steps": torch.tensor(5000)}
    sd.update(layer_norm("bert.embeddings.LayerNorm"))
    index = torch.arange(VOCAB)
    for mouse, human in HOMOLOGS.items():
        index[mouse] = human
    sd["bert.embeddings.homologous_index"] = index
    for kind in RELEASED_KINDS:
        knowledge = rand(VOCAB, D, scale=1.0)
        knowledge[:2] = 0                                    # <pad>, <mask>: zero rows, as the release builds them
        sd[f"bert.embeddings.{kind}_knowledge"] = knowledge
        sd.update(linear(f"bert.embeddings.{kind}_embeddings.linear1", D, D))
    sd.update(linear("bert.embeddings.concat_embeddings.cat_fc", 5 * D + 1, D))
    sd.update(layer_norm("bert.embeddings.concat_embeddings.cat_ln"))
    sd.update(linear("bert.embeddings.concat_embeddings.cat_proj", D, D))
    for i in range(LAYERS):
        p = f"bert.encoder.layer.{i}"
        for part in ("query", "key", "value"):
            sd.update(linear(f"{p}.attention.self.{part}", D, D))
        sd.update(linear(f"{p}.attention.output.dense", D, D))
        sd.update(layer_norm(f"{p}.attention.output.LayerNorm"))
        sd.update(linear(f"{p}.intermediate.dense", D, FFN))
        sd.update(linear(f"{p}.output.dense", FFN, D))
        sd.update(layer_norm(f"{p}.output.LayerNorm"))
    for head, n_out in (("cls", VOCAB), ("cls4value", 1)):
        sd.update(linear(f"{head}.predictions.transform.dense", D, D))
        sd.update(layer_norm(f"{head}.predictions.transform.LayerNorm"))
        sd[f"{head}.predictions.bias"] = rand(n_out, scale=0.1)
        sd[f"{head}.predictions.decoder.bias"] = sd[f"{head}.predictions.bias"]
    sd["cls4value.predictions.decoder.weight"] = rand(1, D)
    sd["cls.predictions.decoder.weight"] = sd["bert.embeddings.word_embeddings.weight"]   # tied, as BERT's
    return sd


def write_release(folder, sd, **config_extra):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(released_config_json(**config_extra)))
    torch.save(sd, folder / "pytorch_model.bin")
    return folder


def reference_forward(sd, input_ids, values, species, attention_mask):
    """The release's forward, from its formulas; the encoder is transformers' BertEncoder."""
    def linear(x, prefix):
        return F.linear(x, sd[f"{prefix}.weight"], sd[f"{prefix}.bias"])

    def layer_norm(x, prefix, eps):
        return F.layer_norm(x, (D,), sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], eps)

    emb = "bert.embeddings"
    rows = input_ids.clone()
    mouse = species == 1
    rows[mouse] = sd[f"{emb}.homologous_index"][input_ids[mouse]]
    parts = [sd[f"{emb}.word_embeddings.weight"][input_ids], values[..., None]]
    for kind in RELEASED_KINDS:                                   # promoter, co_exp, gene_family, peca_grn
        parts.append(ALPHA * linear(sd[f"{emb}.{kind}_knowledge"][rows], f"{emb}.{kind}_embeddings.linear1"))
    x = linear(torch.cat(parts, dim=-1), f"{emb}.concat_embeddings.cat_fc")
    x = layer_norm(x, f"{emb}.concat_embeddings.cat_ln", 1e-5)
    x = x * torch.sigmoid(1.702 * x)
    x = linear(x, f"{emb}.concat_embeddings.cat_proj")
    length = input_ids.shape[1]
    x = x + sd[f"{emb}.token_type_embeddings.weight"][0] + sd[f"{emb}.position_embeddings.weight"][:length]
    x = layer_norm(x, f"{emb}.LayerNorm", 1e-12)
    x = torch.cat([sd["bert.cls_embedding.weight"][species][:, None], x], dim=1)

    config = BertConfig(vocab_size=VOCAB, hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                        intermediate_size=FFN, hidden_act="gelu", layer_norm_eps=1e-12,
                        max_position_embeddings=MAX_POS, attn_implementation="eager")
    encoder = BertEncoder(config).eval()
    encoder.load_state_dict({k[len("bert.encoder."):]: v for k, v in sd.items() if k.startswith("bert.encoder.")})
    mask = torch.cat([torch.ones(len(species), 1, dtype=torch.bool), attention_mask.bool()], dim=1)
    additive = torch.zeros(mask.shape)[:, None, None, :].masked_fill(~mask[:, None, None, :],
                                                                     torch.finfo(torch.float32).min)
    with torch.no_grad():
        hidden = encoder(x, attention_mask=additive)[0]
    genes = hidden[:, 1:]

    def head(name):
        h = F.gelu(linear(genes, f"{name}.predictions.transform.dense"))
        return layer_norm(h, f"{name}.predictions.transform.LayerNorm", 1e-12)

    logits = F.linear(head("cls"), sd["cls.predictions.decoder.weight"], sd["cls.predictions.bias"])
    value = F.linear(head("cls4value"), sd["cls4value.predictions.decoder.weight"],
                     sd["cls4value.predictions.bias"]).squeeze(-1)
    return hidden, logits, value


def batch():
    """Two human and two mouse cells, two of them padded; mouse cells hold genes with and without homologs."""
    input_ids = torch.tensor([[2, 5, 3, 7, 6, 4],
                              [4, 2, 6, 0, 0, 0],
                              [8, 11, 9, 13, 10, 12],
                              [10, 9, 8, 12, 0, 0]])
    attention_mask = input_ids != 0
    values = torch.rand(input_ids.shape, generator=torch.Generator().manual_seed(3)) * 4 * attention_mask
    species = torch.tensor([0, 0, 1, 1])
    return input_ids, values, species, attention_mask


def test_imported_release_computes_the_release_forward(tmp_path):
    sd = random_released_state_dict()
    model = load_released(write_release(tmp_path / "GeneCompass_Tiny", sd))
    assert model.config.knowledge_scale == pytest.approx(ALPHA)
    input_ids, values, species, attention_mask = batch()
    with torch.no_grad():
        out = model(input_ids, values, species, attention_mask)
    hidden, logits, value = reference_forward(sd, input_ids, values, species, attention_mask)
    differences = {"hidden": (out.last_hidden_state - hidden).abs().max().item(),
                   "id_logits": (out.logits - logits).abs().max().item(),
                   "values": (out.value_predictions - value).abs().max().item()}
    print("largest absolute differences:", differences)
    assert max(differences.values()) < 1e-5, differences
    assert hidden.abs().max() > 0.5 and logits.std() > 0.1     # the comparison is not of near-zeros
    # the homolog index matters: reading mouse knowledge at the mouse rows gives another forward
    model.genecompass.embeddings.knowledge_homolog_index.copy_(torch.arange(VOCAB))
    with torch.no_grad():
        unmapped = model(input_ids, values, species, attention_mask).last_hidden_state
    assert (unmapped[2:] - hidden[2:]).abs().max() > 1e-3
    assert (unmapped[:2] - hidden[:2]).abs().max() < 1e-5      # human cells are untouched


def test_export_then_import_is_the_identity(tmp_path):
    sd = random_released_state_dict(seed=1)
    model = load_released(write_release(tmp_path / "release", sd))
    exported = released_state_dict(model)
    assert exported.keys() == sd.keys()
    for key, tensor in sd.items():
        if key != "emb_warmup.steps":      # a training counter, not part of the forward: exported as 0
            assert torch.equal(exported[key], tensor), key
    save_released(model, tmp_path / "exported")
    assert json.loads((tmp_path / "exported" / "config.json").read_text())["tie_word_embeddings"] is False
    again = load_released(tmp_path / "exported")
    mine, theirs = model.state_dict(), again.state_dict()
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert torch.equal(mine[key], theirs[key]), key
    assert again.config.to_diff_dict() == model.config.to_diff_dict()
    # and through our own Hugging Face format, the way the workflow's rules load models
    model.save_pretrained(tmp_path / "ours")
    reloaded = GeneCompassForPretraining.from_pretrained(tmp_path / "ours").eval()
    encoder = GeneCompassModel.from_pretrained(tmp_path / "ours").eval()
    input_ids, values, species, attention_mask = batch()
    with torch.no_grad():
        expected = model(input_ids, values, species, attention_mask)
        assert torch.equal(reloaded(input_ids, values, species, attention_mask).logits, expected.logits)
        assert torch.equal(encoder(input_ids, values, species, attention_mask).last_hidden_state,
                           expected.last_hidden_state)


def test_our_model_in_the_released_layout_exports_and_reimports_to_the_same_forward(tmp_path):
    from genecompass.model import GeneCompassConfig
    from genecompass.model.configuration import RELEASED_LAYOUT

    config = GeneCompassConfig(vocab_size=VOCAB, hidden_size=D, num_hidden_layers=LAYERS,
                               num_attention_heads=HEADS, intermediate_size=FFN, max_position_embeddings=MAX_POS,
                               knowledge_kinds=["promoter", "coexpression", "family", "grn"],
                               knowledge_scale=0.5, **RELEASED_LAYOUT)
    torch.manual_seed(0)
    model = GeneCompassForPretraining(config).eval()
    save_released(model, tmp_path / "ours")
    again = load_released(tmp_path / "ours")
    input_ids, values, species, attention_mask = batch()
    with torch.no_grad():
        a, b = model(input_ids, values, species, attention_mask), again(input_ids, values, species, attention_mask)
    assert torch.equal(a.last_hidden_state, b.last_hidden_state) and torch.equal(a.logits, b.logits)


def test_bad_release_folders_are_named(tmp_path):
    with pytest.raises(InputError, match="config.json"):
        load_released(tmp_path)
    sd = random_released_state_dict()
    with pytest.raises(InputError, match="use_cls_token"):
        load_released(write_release(tmp_path / "a", sd, use_cls_token=False))
    del sd["bert.encoder.layer.1.output.dense.weight"]
    with pytest.raises(InputError, match="layer.1.output.dense.weight"):
        load_released(write_release(tmp_path / "b", sd))
    sd = random_released_state_dict()
    sd["bert.pooler.dense.weight"] = torch.zeros(D, D)
    with pytest.raises(InputError, match="pooler"):
        load_released(write_release(tmp_path / "c", sd))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "config.json").write_text(json.dumps(released_config_json()))
    with pytest.raises(InputError, match="pytorch_model.bin"):
        load_released(tmp_path / "d")
