"""Import and export of the authors' released GeneCompass checkpoints.

A released folder (``GeneCompass_Small`` / ``GeneCompass_Base``) holds the
``config.json`` of a ``transformers.BertConfig`` with extra keys (``use_values``,
``use_promoter``, ``use_co_exp``, ``use_gene_family``, ``use_peca_grn``,
``use_cls_token``, ``warmup_steps``, ``emb_warmup_steps``) and the state dict of
the authors' ``BertForMaskedLM`` (``pytorch_model.bin``, or ``model.safetensors``).
The four knowledge matrices and the mouse → human ``homologous_index`` are
buffers in it; the embedding warm-up factor is the parameter ``emb_warmup.alpha``.

``load_released`` maps that state dict onto :class:`GeneCompassForPretraining`
built with ``RELEASED_LAYOUT`` (see ``configuration.py``), which computes the
released forward; ``save_released`` writes one of our models built that way in
the released layout (``config.json`` + ``model.safetensors``, which the
authors' ``from_pretrained`` reads), so the two round-trip exactly.

Query, key and value of a BERT layer are three Linear layers; ours is one
``qkv`` Linear with their rows stacked in that order.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from genecompass.errors import InputError

from .configuration import RELEASED_KNOWLEDGE_ORDER, RELEASED_LAYOUT, GeneCompassConfig
from .modeling import GeneCompassForPretraining

# The release's knowledge names → ours, in the order its embedding concatenates them.
RELEASED_KINDS = {"promoter": "promoter", "co_exp": "coexpression", "gene_family": "family", "peca_grn": "grn"}
assert tuple(RELEASED_KINDS.values()) == RELEASED_KNOWLEDGE_ORDER
RELEASED_WEIGHTS = ("model.safetensors", "pytorch_model.bin")

# Our keys ↔ the release's, for the parts that are a plain rename. {i}: layer index.
_EMBEDDING_KEYS = {
    "genecompass.embeddings.gene_embeddings.weight": "bert.embeddings.word_embeddings.weight",
    "genecompass.embeddings.position_embeddings.weight": "bert.embeddings.position_embeddings.weight",
    "genecompass.embeddings.token_type_embeddings.weight": "bert.embeddings.token_type_embeddings.weight",
    "genecompass.embeddings.LayerNorm.weight": "bert.embeddings.LayerNorm.weight",
    "genecompass.embeddings.LayerNorm.bias": "bert.embeddings.LayerNorm.bias",
    "genecompass.embeddings.knowledge_homolog_index": "bert.embeddings.homologous_index",
    "genecompass.species_embeddings.weight": "bert.cls_embedding.weight",
    **{f"genecompass.embeddings.fusion.{ours}.{p}": f"bert.embeddings.concat_embeddings.{theirs}.{p}"
       for ours, theirs in (("fc", "cat_fc"), ("LayerNorm", "cat_ln"), ("proj", "cat_proj"))
       for p in ("weight", "bias")},
}
_HEAD_KEYS = {
    **{f"{ours}_transform.{part}.{p}": f"{theirs}.predictions.transform.{part}.{p}"
       for ours, theirs in (("id", "cls"), ("value", "cls4value"))
       for part in ("dense", "LayerNorm") for p in ("weight", "bias")},
    "id_decoder.weight": "cls.predictions.decoder.weight",
    "id_decoder.bias": "cls.predictions.bias",
    "value_decoder.weight": "cls4value.predictions.decoder.weight",
    "value_decoder.bias": "cls4value.predictions.bias",
}
_LAYER_KEYS = {
    "attention.output": "attention.output.dense",
    "attention_LayerNorm": "attention.output.LayerNorm",
    "intermediate": "intermediate.dense",
    "output": "output.dense",
    "output_LayerNorm": "output.LayerNorm",
}


def _renames(config: GeneCompassConfig) -> dict[str, str]:
    """Our key → the release's, for every tensor that is copied as it is."""
    names = dict(_EMBEDDING_KEYS)
    for theirs, ours in RELEASED_KINDS.items():
        if ours in config.knowledge_kinds:
            names[f"genecompass.embeddings.knowledge_{ours}"] = f"bert.embeddings.{theirs}_knowledge"
            for p in ("weight", "bias"):
                names[f"genecompass.embeddings.knowledge_projections.{ours}.{p}"] = \
                    f"bert.embeddings.{theirs}_embeddings.linear1.{p}"
    for i in range(config.num_hidden_layers):
        for ours, theirs in _LAYER_KEYS.items():
            for p in ("weight", "bias"):
                names[f"genecompass.layers.{i}.{ours}.{p}"] = f"bert.encoder.layer.{i}.{theirs}.{p}"
    names.update(_HEAD_KEYS)
    return names


def _qkv(i: int) -> list[str]:
    return [f"bert.encoder.layer.{i}.attention.self.{part}" for part in ("query", "key", "value")]


# --------------------------------------------------------------------------- config


def config_from_released(bert: dict, mask_token_id: int = 1, path=None) -> GeneCompassConfig:
    """Our config for a released ``config.json`` (a dict)."""
    def need(key):
        if key not in bert:
            raise InputError(path, key, "is missing", "pass the config.json of a released GeneCompass folder")
        return bert[key]

    if not bert.get("use_cls_token", False):
        raise InputError(path, "use_cls_token", "is false: the species is not encoded",
                         "use a released GeneCompass checkpoint (they set use_cls_token true)")
    act = bert.get("hidden_act", "gelu")
    if act != "gelu":
        raise InputError(path, "hidden_act", f"is '{act}'", "only GELU encoders (the release's) are supported")
    if bert.get("position_embedding_type", "absolute") != "absolute":
        raise InputError(path, "position_embedding_type", f"is '{bert['position_embedding_type']}'",
                         "only absolute positions (the release's) are supported")
    kinds = [ours for theirs, ours in RELEASED_KINDS.items() if bert.get(f"use_{theirs}", False)]
    return GeneCompassConfig(
        vocab_size=need("vocab_size"), hidden_size=need("hidden_size"),
        num_hidden_layers=need("num_hidden_layers"), num_attention_heads=need("num_attention_heads"),
        intermediate_size=need("intermediate_size"), hidden_act="gelu",
        hidden_dropout_prob=bert.get("hidden_dropout_prob", 0.1),
        attention_probs_dropout_prob=bert.get("attention_probs_dropout_prob", 0.1),
        initializer_range=bert.get("initializer_range", 0.02), layer_norm_eps=bert.get("layer_norm_eps", 1e-12),
        max_position_embeddings=need("max_position_embeddings"), knowledge_dim=bert.get("hidden_size"),
        knowledge_kinds=kinds, use_values=bool(bert.get("use_values", False)),
        pad_token_id=bert.get("pad_token_id", 0), mask_token_id=mask_token_id,
        beta=0.8 if bert.get("use_values", False) else 0.0,   # loss 0.2 × ID + 0.8 × value
        **RELEASED_LAYOUT)


def released_config(config: GeneCompassConfig) -> dict:
    """The release's ``config.json`` (a dict) for one of our configs built with ``RELEASED_LAYOUT``.

    The release's embedding warm-up raises ``alpha`` by 1 / ``emb_warmup_steps`` at every forward
    after ``warmup_steps`` forwards, until 1. A scale of 1 stays put; a smaller one is kept fixed
    by a warm-up no run reaches.
    """
    _check_layout(config)
    warmup_steps = 0 if config.knowledge_scale >= 1.0 else 2 ** 62
    bert = {
        "architectures": ["BertForMaskedLM"], "model_type": "bert",
        "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_hidden_layers, "num_attention_heads": config.num_attention_heads,
        "intermediate_size": config.intermediate_size, "hidden_act": "gelu",
        "hidden_dropout_prob": config.hidden_dropout_prob,
        "attention_probs_dropout_prob": config.attention_probs_dropout_prob,
        "initializer_range": config.initializer_range, "layer_norm_eps": config.layer_norm_eps,
        "max_position_embeddings": config.max_position_embeddings, "type_vocab_size": 2,
        "position_embedding_type": "absolute", "pad_token_id": config.pad_token_id,
        "use_values": config.use_values, "use_cls_token": True,
        "tie_word_embeddings": False,   # our gene-ID decoder is its own matrix
        "warmup_steps": warmup_steps, "emb_warmup_steps": 1,
    }
    bert.update({f"use_{theirs}": ours in config.knowledge_kinds for theirs, ours in RELEASED_KINDS.items()})
    return bert


def _check_layout(config: GeneCompassConfig) -> None:
    wrong = {key: getattr(config, key) for key, value in RELEASED_LAYOUT.items() if getattr(config, key) != value}
    if wrong:
        raise ValueError(f"the model is not built in the released layout ({wrong}); build it with "
                         "GeneCompassConfig(..., **RELEASED_LAYOUT)")
    order = [kind for kind in RELEASED_KINDS.values() if kind in config.knowledge_kinds]
    if list(config.knowledge_kinds) != order:
        raise ValueError(f"knowledge kinds {config.knowledge_kinds} must follow the release's order {order}")


# --------------------------------------------------------------------------- weights


def state_dict_from_released(released: dict[str, torch.Tensor], config: GeneCompassConfig,
                             tied: bool = True, path=None) -> dict[str, torch.Tensor]:
    """Our ``GeneCompassForPretraining`` state dict for a released one (tensors shared, not copied).

    ``tied``: the release's ``tie_word_embeddings`` (BERT's default, true): its
    gene-ID decoder is its word embedding, whatever the file holds under
    ``cls.predictions.decoder.weight`` (often nothing).
    """
    released = dict(released)
    for head in ("cls", "cls4value"):   # the output bias is one tensor saved under either name
        if f"{head}.predictions.bias" not in released and f"{head}.predictions.decoder.bias" in released:
            released[f"{head}.predictions.bias"] = released[f"{head}.predictions.decoder.bias"]
    if tied and "bert.embeddings.word_embeddings.weight" in released:
        released["cls.predictions.decoder.weight"] = released["bert.embeddings.word_embeddings.weight"]
    ours: dict[str, torch.Tensor] = {}
    used = set()
    for key, theirs in _renames(config).items():
        if theirs not in released:
            raise InputError(path, theirs, "is missing from the weights",
                             "pass the weights of the same released folder as its config.json")
        ours[key] = released[theirs]
        used.add(theirs)
    for i in range(config.num_hidden_layers):
        parts = _qkv(i)
        for p in ("weight", "bias"):
            ours[f"genecompass.layers.{i}.attention.qkv.{p}"] = torch.cat([released[f"{k}.{p}"] for k in parts])
            used.update(f"{k}.{p}" for k in parts)
    for kind in config.knowledge_kinds:   # the release has a row for every token (zeros for specials)
        ours[f"genecompass.embeddings.knowledge_{kind}_mask"] = torch.ones(config.vocab_size, dtype=torch.bool)
    left = sorted(set(released) - used - {"bert.embeddings.position_ids", "bert.embeddings.token_type_ids",
                                          "emb_warmup.alpha", "emb_warmup.steps",
                                          "cls.predictions.decoder.bias", "cls4value.predictions.decoder.bias"})
    if left:
        raise InputError(path, left[0], f"is not part of a released GeneCompass model ({len(left)} such keys)",
                         "pass an unmodified released checkpoint (BertForMaskedLM with knowledge)")
    return ours


def released_state_dict(model: GeneCompassForPretraining) -> dict[str, torch.Tensor]:
    """The release's state dict (its ``BertForMaskedLM`` keys) of one of our models."""
    config = model.config
    _check_layout(config)
    ours = model.state_dict()
    released = {theirs: ours[key] for key, theirs in _renames(config).items()}
    d = config.hidden_size
    for i in range(config.num_hidden_layers):
        for p in ("weight", "bias"):
            for part, chunk in zip(_qkv(i), ours[f"genecompass.layers.{i}.attention.qkv.{p}"].split(d)):
                released[f"{part}.{p}"] = chunk
    released["cls.predictions.decoder.bias"] = released["cls.predictions.bias"]
    released["cls4value.predictions.decoder.bias"] = released["cls4value.predictions.bias"]
    released["emb_warmup.alpha"] = torch.tensor(config.knowledge_scale)
    released["emb_warmup.steps"] = torch.tensor(0)
    released["bert.embeddings.position_ids"] = torch.arange(config.max_position_embeddings)[None]
    # clones: safetensors refuses tensors that share memory (the tied output biases)
    return {key: value.detach().clone().contiguous() for key, value in released.items()}


def read_released_weights(folder) -> dict[str, torch.Tensor]:
    """The state dict of a released folder: ``model.safetensors``, else ``pytorch_model.bin`` (weights only)."""
    folder = Path(folder)
    for name in RELEASED_WEIGHTS:
        path = folder / name
        if path.exists():
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file
                return load_file(str(path))
            weights = torch.load(path, map_location="cpu", weights_only=True)
            return weights.get("state_dict", weights)
    raise InputError(folder, "weights", f"neither of {list(RELEASED_WEIGHTS)} is in the folder",
                     "point model.source at the unpacked GeneCompass_Small / GeneCompass_Base folder")


def load_released(folder, mask_token_id: int = 1) -> GeneCompassForPretraining:
    """A released checkpoint folder as our :class:`GeneCompassForPretraining` (eval mode, float32)."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.exists():
        raise InputError(config_path, "file", "does not exist",
                         "point model.source at the unpacked GeneCompass_Small / GeneCompass_Base folder")
    bert = json.loads(config_path.read_text())
    config = config_from_released(bert, mask_token_id, config_path)
    weights = read_released_weights(folder)
    config.knowledge_scale = float(weights.get("emb_warmup.alpha", torch.tensor(1.0)))
    for theirs, ours in RELEASED_KINDS.items():   # the knowledge width is the matrices'
        if ours in config.knowledge_kinds and f"bert.embeddings.{theirs}_knowledge" in weights:
            config.knowledge_dim = int(weights[f"bert.embeddings.{theirs}_knowledge"].shape[1])
    model = GeneCompassForPretraining(config)
    state = state_dict_from_released(weights, config, bert.get("tie_word_embeddings", True), folder)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:   # every key of ours is mapped above; a miss is a bug here, not the user's
        raise RuntimeError(f"released import left keys unset {missing} or unknown {unexpected}")
    return model.eval()


def save_released(model: GeneCompassForPretraining, folder) -> Path:
    """Write ``model`` in the released layout: ``config.json`` + ``model.safetensors``."""
    from safetensors.torch import save_file

    from genecompass.utils import atomic_output

    folder = Path(folder)
    with atomic_output(folder) as tmp:
        tmp.mkdir(parents=True)
        (tmp / "config.json").write_text(json.dumps(released_config(model.config), indent=2) + "\n")
        save_file(released_state_dict(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
    return folder
