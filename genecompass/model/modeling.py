"""The GeneCompass transformer, in the style of ``transformers.models.bert``.

Input encoding (paper, "GeneCompass architecture"): for every gene of a cell
the gene-ID embedding, a learned projection of its expression value and the
four prior-knowledge vectors (GRN, promoter, gene family, co-expression; each
through its own Linear layer) are CONCATENATED and mapped to ``hidden_size``
by a Linear layer; a position embedding of the gene's rank is added, then
LayerNorm and dropout. A species token (``<human>`` / ``<mouse>``, its own row
of the ID embedding) is prepended to each cell at position 0; its output is
the cell embedding.

The knowledge matrices are non-trainable, persistent buffers
``knowledge_{kind}`` (vocab × knowledge_dim) and ``knowledge_{kind}_mask``
(vocab, bool), so they are part of the checkpoint written by
``save_pretrained``. A token without a vector (mask False; every special
token, the ``<mask>`` token included) contributes zeros, so a masked gene
cannot see its own knowledge.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    ModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

from ..corpus import IGNORE_INDEX, mask_batch
from .configuration import GeneCompassConfig

# --------------------------------------------------------------------------- modules


class QuickGELU(nn.Module):
    """x · sigmoid(1.702 x), the activation of the released checkpoints' fusion MLP."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class GeneCompassEmbeddings(nn.Module):
    """ID ⊕ value ⊕ knowledge → fusion → + rank position (+ token type) → LayerNorm → dropout.

    The fusion is one Linear, or under ``fusion="mlp"`` the released
    checkpoints' Linear → LayerNorm → QuickGELU → Linear (its LayerNorm keeps
    PyTorch's default epsilon, as the release's does).
    """

    def __init__(self, config: GeneCompassConfig):
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.gene_embeddings = nn.Embedding(config.vocab_size, d, padding_idx=config.pad_token_id)
        width = d
        if config.use_values:
            if config.value_encoding == "linear":
                self.value_projection = nn.Linear(1, d)
            width += d if config.value_encoding == "linear" else 1
        self.knowledge_kinds = list(config.knowledge_kinds)
        self.knowledge_projections = nn.ModuleDict(
            {kind: nn.Linear(config.knowledge_dim, d) for kind in self.knowledge_kinds})
        width += len(self.knowledge_kinds) * d
        self.input_width = width
        if config.fusion == "linear":
            self.fusion = nn.Linear(width, d)
        else:
            self.fusion = nn.Sequential(OrderedDict([
                ("fc", nn.Linear(width, d)), ("LayerNorm", nn.LayerNorm(d)), ("act", QuickGELU()),
                ("proj", nn.Linear(d, d))]))
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, d)
        if config.token_type_embedding:
            self.token_type_embeddings = nn.Embedding(2, d)
        self.LayerNorm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        for kind in self.knowledge_kinds:
            self.register_buffer(f"knowledge_{kind}", torch.zeros(config.vocab_size, config.knowledge_dim),
                                 persistent=True)
            self.register_buffer(f"knowledge_{kind}_mask", torch.zeros(config.vocab_size, dtype=torch.bool),
                                 persistent=True)
        if config.knowledge_homologs:
            self.register_buffer("knowledge_homolog_index", torch.arange(config.vocab_size), persistent=True)

    def knowledge(self, kind: str, ids: torch.Tensor) -> torch.Tensor:
        """The (zeroed where uncovered) knowledge vectors of ``ids``."""
        matrix = getattr(self, f"knowledge_{kind}")
        mask = getattr(self, f"knowledge_{kind}_mask")
        return matrix[ids] * mask[ids].unsqueeze(-1).to(matrix.dtype)

    def gene_encoding(self, ids: torch.Tensor, values: torch.Tensor,
                      knowledge_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The fused ID ⊕ value ⊕ knowledge encoding, before the rank position is added.

        ``knowledge_ids``: the rows knowledge is read at (default ``ids``; see ``knowledge_homologs``).
        """
        parts = [self.gene_embeddings(ids)]
        if self.config.use_values:
            value = values.unsqueeze(-1).to(parts[0].dtype)
            parts.append(self.value_projection(value) if self.config.value_encoding == "linear" else value)
        knowledge_ids = ids if knowledge_ids is None else knowledge_ids
        for kind in self.knowledge_kinds:
            projected = self.knowledge_projections[kind](self.knowledge(kind, knowledge_ids).to(parts[0].dtype))
            parts.append(projected if self.config.knowledge_scale == 1.0 else self.config.knowledge_scale * projected)
        return self.fusion(torch.cat(parts, dim=-1))

    def forward(self, ids: torch.Tensor, values: torch.Tensor, position_ids: torch.Tensor,
                knowledge_ids: torch.Tensor | None = None) -> torch.Tensor:
        x = self.gene_encoding(ids, values, knowledge_ids) + self.position_embeddings(position_ids)
        if self.config.token_type_embedding:
            x = x + self.token_type_embeddings.weight[0]
        return self.dropout(self.LayerNorm(x))


class GeneCompassSelfAttention(nn.Module):
    def __init__(self, config: GeneCompassConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.output = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                             dropout_p=self.dropout_p if self.training else 0.0)
        return self.output(out.transpose(1, 2).reshape(b, s, d))


class GeneCompassLayer(nn.Module):
    """Transformer block: self-attention + GELU MLP, post-LN (BERT) or pre-LN."""

    def __init__(self, config: GeneCompassConfig):
        super().__init__()
        self.pre_layer_norm = config.pre_layer_norm
        self.attention = GeneCompassSelfAttention(config)
        self.attention_LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.output_LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(F.gelu(self.intermediate(x)))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        if self.pre_layer_norm:
            x = x + self.dropout(self.attention(self.attention_LayerNorm(x), attn_mask))
            return x + self.dropout(self.mlp(self.output_LayerNorm(x)))
        x = self.attention_LayerNorm(x + self.dropout(self.attention(x, attn_mask)))
        return self.output_LayerNorm(x + self.dropout(self.mlp(x)))


class GeneCompassPreTrainedModel(PreTrainedModel):
    config_class = GeneCompassConfig
    config: GeneCompassConfig
    base_model_prefix = "genecompass"
    supports_gradient_checkpointing = False
    _no_split_modules = ("GeneCompassLayer",)

    @torch.no_grad()
    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        if isinstance(module, GeneCompassEmbeddings):
            # Knowledge comes from set_knowledge or the checkpoint; start empty.
            for kind in module.knowledge_kinds:
                init.zeros_(getattr(module, f"knowledge_{kind}"))
                init.zeros_(getattr(module, f"knowledge_{kind}_mask"))
            if module.config.knowledge_homologs:   # every token reads its own row until a map is set
                init.copy_(module.knowledge_homolog_index, torch.arange(module.config.vocab_size))


class GeneCompassModel(GeneCompassPreTrainedModel):
    """The encoder: species token + genes → hidden states (B, 1 + L, D).

    ``forward(input_ids, values, species_ids, attention_mask)``:
    ``input_ids`` (B × L gene token ids, ranked), ``values`` (B × L floats),
    ``species_ids`` (B species token ids, e.g. 2 human / 3 mouse),
    ``attention_mask`` (B × L, 1 = real gene; default ``input_ids != pad``).
    ``last_hidden_state[:, 0]`` (also ``pooler_output``) is the cell embedding.
    """

    def __init__(self, config: GeneCompassConfig):
        super().__init__(config)
        self.embeddings = GeneCompassEmbeddings(config)
        if config.species_embedding == "separate":
            self.species_embeddings = nn.Embedding(len(config.species_token_ids), config.hidden_size)
        self.layers = nn.ModuleList([GeneCompassLayer(config) for _ in range(config.num_hidden_layers)])
        self.final_LayerNorm = (nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
                                if config.pre_layer_norm else None)
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.gene_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.gene_embeddings = value

    @torch.no_grad()
    def set_knowledge(self, knowledge) -> None:
        """Copy a :class:`~genecompass.knowledge.assemble.KnowledgeMatrices` into the buffers.

        Every enabled kind must be present, with ``vocab_size`` rows and
        ``knowledge_dim`` columns. Uncovered rows and the special tokens (pad,
        mask, species) are stored as zeros with mask False.
        """
        cfg = self.config
        if int(knowledge.dim) != cfg.knowledge_dim:
            raise ValueError(f"knowledge dim {knowledge.dim} differs from the model's knowledge_dim "
                             f"{cfg.knowledge_dim}")
        special = [cfg.pad_token_id, cfg.mask_token_id, *cfg.species_token_ids.values()]
        for kind in self.embeddings.knowledge_kinds:
            if kind not in knowledge.matrices:
                raise ValueError(f"knowledge kind '{kind}' is enabled but missing from the knowledge file "
                                 f"(it has {list(knowledge.matrices)})")
            matrix = torch.as_tensor(knowledge.matrices[kind], dtype=torch.float32)
            mask = torch.as_tensor(knowledge.masks[kind], dtype=torch.bool).clone()
            if matrix.shape != (cfg.vocab_size, cfg.knowledge_dim) or mask.shape != (cfg.vocab_size,):
                raise ValueError(f"knowledge '{kind}' has shape {tuple(matrix.shape)} (mask {tuple(mask.shape)}); "
                                 f"the model expects ({cfg.vocab_size}, {cfg.knowledge_dim})")
            mask[special] = False
            matrix = matrix * mask.unsqueeze(-1)
            buffer = getattr(self.embeddings, f"knowledge_{kind}")
            buffer.copy_(matrix.to(buffer.device, buffer.dtype))
            getattr(self.embeddings, f"knowledge_{kind}_mask").copy_(mask.to(buffer.device))

    def knowledge_rows(self, ids: torch.Tensor, species_ids: torch.Tensor) -> torch.Tensor | None:
        """Under ``knowledge_homologs`` the rows mouse cells read knowledge at; else None (the ids)."""
        if not self.config.knowledge_homologs:
            return None
        mouse = species_ids == self.config.species_token_ids["mouse"]
        index = self.embeddings.knowledge_homolog_index
        return torch.where(mouse[:, None], index[ids], ids)

    def forward(self, input_ids: torch.Tensor, values: torch.Tensor | None = None,
                species_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False, return_dict: bool = True, **kwargs):
        cfg = self.config
        b, length = input_ids.shape
        if length > cfg.max_genes:
            raise ValueError(f"cells of {length} genes need max_position_embeddings >= "
                             f"{length + cfg.species_position}, the config has {cfg.max_position_embeddings}")
        if species_ids is None:
            raise ValueError("species_ids (the species token id of each cell) is required")
        species_ids = torch.as_tensor(species_ids, device=input_ids.device).long().reshape(b)
        known = torch.tensor(sorted(cfg.species_token_ids.values()), device=input_ids.device)
        if not torch.isin(species_ids, known).all():
            raise ValueError(f"species_ids must be species token ids {cfg.species_token_ids}")
        if values is None:
            values = torch.zeros(input_ids.shape, device=input_ids.device)
        if attention_mask is None:
            attention_mask = input_ids != cfg.pad_token_id
        attention_mask = attention_mask.bool()
        mask = torch.cat([attention_mask.new_ones(b, 1), attention_mask], dim=1)
        if cfg.species_embedding == "token":
            ids = torch.cat([species_ids[:, None], input_ids], dim=1)
            vals = torch.cat([values.new_zeros(b, 1), values.to(torch.float32)], dim=1)
            position_ids = torch.arange(length + 1, device=input_ids.device).expand(b, -1)
            x = self.embeddings(ids, vals, position_ids, self.knowledge_rows(ids, species_ids))
        else:   # the released layout: genes alone through the embedding, the species vector prepended
            position_ids = torch.arange(length, device=input_ids.device).expand(b, -1)
            genes = self.embeddings(input_ids, values.to(torch.float32), position_ids,
                                    self.knowledge_rows(input_ids, species_ids))
            x = torch.cat([self.species_embeddings(species_ids)[:, None].to(genes.dtype), genes], dim=1)
        attn_mask = mask[:, None, None, :]  # (B, 1, 1, S): True = attend to this key
        hidden_states = (x,) if output_hidden_states else None
        for layer in self.layers:
            x = layer(x, attn_mask)
            if output_hidden_states:
                hidden_states = hidden_states + (x,)
        if self.final_LayerNorm is not None:
            x = self.final_LayerNorm(x)
            if output_hidden_states:
                hidden_states = hidden_states[:-1] + (x,)
        if not return_dict:
            return (x, x[:, 0]) + ((hidden_states,) if output_hidden_states else ())
        return BaseModelOutputWithPooling(last_hidden_state=x, pooler_output=x[:, 0], hidden_states=hidden_states)


# --------------------------------------------------------------------------- heads


class GeneCompassPredictionTransform(nn.Module):
    def __init__(self, config: GeneCompassConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x):
        return self.LayerNorm(F.gelu(self.dense(x)))


@dataclass
class GeneCompassPretrainingOutput(ModelOutput):
    """loss = (1 − β)·id_loss + β·value_loss; logits (B, L, vocab), or (n, vocab) at the positions of
    ``logits_mask``; value_predictions (B, L) per gene."""

    loss: torch.Tensor | None = None
    id_loss: torch.Tensor | None = None
    value_loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    value_predictions: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    hidden_states: tuple | None = None


class GeneCompassForPretraining(GeneCompassPreTrainedModel):
    """Masked gene modelling: recover the ID (cross-entropy) and value (MSE) of masked genes."""

    def __init__(self, config: GeneCompassConfig):
        super().__init__(config)
        self.genecompass = GeneCompassModel(config)
        self.id_transform = GeneCompassPredictionTransform(config)
        self.id_decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.value_transform = GeneCompassPredictionTransform(config)
        self.value_decoder = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def set_knowledge(self, knowledge) -> None:
        self.genecompass.set_knowledge(knowledge)

    def mask(self, input_ids, values, attention_mask=None, generator=None):
        """:func:`genecompass.corpus.mask_batch` with this model's mask probability and token ids."""
        return mask_batch(input_ids, values, attention_mask, self.config.mask_probability, generator,
                          mask_token_id=self.config.mask_token_id, pad_token_id=self.config.pad_token_id)

    def forward(self, input_ids, values=None, species_ids=None, attention_mask=None, id_labels=None,
                value_labels=None, value_label_mask=None, output_hidden_states: bool = False,
                logits_mask: torch.Tensor | None = None, **kwargs):
        """``logits_mask`` (B, L bool), when given, runs the ID decoder only at those positions and
        returns ``logits`` as (n_selected, vocab) in row-major order. Training passes the masked
        positions: the vocabulary-wide projection is the costliest layer of a small model, and the loss
        only reads ~15% of its rows."""
        out = self.genecompass(input_ids, values, species_ids, attention_mask,
                               output_hidden_states=output_hidden_states)
        genes = out.last_hidden_state[:, 1:]
        if logits_mask is None:
            logits = self.id_decoder(self.id_transform(genes))
            flat_logits, flat_labels = logits.reshape(-1, logits.shape[-1]), id_labels
        else:
            logits_mask = logits_mask.bool()
            if logits_mask.shape != input_ids.shape:
                raise ValueError(f"logits_mask has shape {tuple(logits_mask.shape)}; it must match "
                                 f"input_ids {tuple(input_ids.shape)}")
            logits = flat_logits = self.id_decoder(self.id_transform(genes[logits_mask]))
            flat_labels = None if id_labels is None else id_labels[logits_mask]
        value_predictions = self.value_decoder(self.value_transform(genes)).squeeze(-1)
        loss = id_loss = value_loss = None
        if id_labels is not None:
            id_loss = F.cross_entropy(flat_logits.float(), flat_labels.reshape(-1), ignore_index=IGNORE_INDEX)
            if not torch.isfinite(id_loss):  # no masked position in the batch
                id_loss = logits.sum() * 0.0
        if value_labels is not None:
            if value_label_mask is None:
                if id_labels is None:
                    raise ValueError("value_labels need value_label_mask or id_labels to know the masked genes")
                value_label_mask = id_labels != IGNORE_INDEX
            selected = value_label_mask.bool()
            diff = (value_predictions.float() - value_labels.float())[selected]
            value_loss = (diff ** 2).mean() if diff.numel() else value_predictions.sum() * 0.0
        if id_loss is not None or value_loss is not None:
            beta = self.config.beta
            loss = 0.0
            if id_loss is not None:
                loss = loss + (1.0 - beta) * id_loss
            if value_loss is not None:
                loss = loss + beta * value_loss
        return GeneCompassPretrainingOutput(loss=loss, id_loss=id_loss, value_loss=value_loss, logits=logits,
                                            value_predictions=value_predictions,
                                            last_hidden_state=out.last_hidden_state,
                                            hidden_states=out.hidden_states)


class _GeneCompassWithClassifier(GeneCompassPreTrainedModel):
    """The encoder plus a dropout + linear classifier; subclasses choose the positions."""

    def __init__(self, config: GeneCompassConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.genecompass = GeneCompassModel(config)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def set_knowledge(self, knowledge) -> None:
        self.genecompass.set_knowledge(knowledge)


class GeneCompassForSequenceClassification(_GeneCompassWithClassifier):
    """Cell classification (or regression when ``num_labels == 1``) from the species-token output."""

    def forward(self, input_ids, values=None, species_ids=None, attention_mask=None, labels=None,
                output_hidden_states: bool = False, **kwargs):
        out = self.genecompass(input_ids, values, species_ids, attention_mask,
                               output_hidden_states=output_hidden_states)
        logits = self.classifier(self.dropout(out.pooler_output))
        loss = None
        if labels is not None:
            if self.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1).float(), labels.float())
            else:
                loss = F.cross_entropy(logits.float(), labels.long(), ignore_index=IGNORE_INDEX)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


class GeneCompassForTokenClassification(_GeneCompassWithClassifier):
    """Per-gene classification; ``logits`` (B, L, num_labels) align with ``input_ids``."""

    def forward(self, input_ids, values=None, species_ids=None, attention_mask=None, labels=None,
                output_hidden_states: bool = False, **kwargs):
        out = self.genecompass(input_ids, values, species_ids, attention_mask,
                               output_hidden_states=output_hidden_states)
        logits = self.classifier(self.dropout(out.last_hidden_state[:, 1:]))
        loss = None
        if labels is not None:
            labels = labels.long()
            if attention_mask is not None:
                labels = labels.masked_fill(~attention_mask.bool(), IGNORE_INDEX)
            loss = F.cross_entropy(logits.reshape(-1, self.num_labels).float(), labels.reshape(-1),
                                   ignore_index=IGNORE_INDEX)
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)
