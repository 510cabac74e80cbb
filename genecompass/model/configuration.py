"""Configuration of the GeneCompass model (a ``transformers.PretrainedConfig``).

Paper (Materials and Methods, "GeneCompass architecture"): a BERT-style
transformer, L = 12 layers, H = 12 heads, D = 768 hidden size, GELU, dropout
0.02 for attention and dense layers, initializer std 0.02, LayerNorm epsilon
1e-12; 15% of the genes of each cell are masked and the loss is
``(1 - beta) * L_ID + beta * L_exp``.

Switches for the ablation experiments: ``use_values`` (expression values as
input) and ``knowledge_kinds`` (which prior-knowledge embeddings enter the
input); each part turned off is simply left out of the concatenated gene
input, so the fusion layer becomes narrower.

Switches of the authors' released checkpoints (``RELEASED_LAYOUT``; see
``genecompass.model.released``), each off by default:
``value_encoding`` ``"scalar"`` (the raw value enters the concatenation as one
number; ours: ``"linear"``, a learned projection); ``fusion`` ``"mlp"``
(Linear → LayerNorm → QuickGELU → Linear; ours: one Linear);
``token_type_embedding`` (BERT's segment embedding, row 0 added to every
gene); ``species_embedding`` ``"separate"`` (an unnormalised species vector
prepended after the genes' LayerNorm, positions counting genes only, species
ids 0 human / 1 mouse; ours: ``"token"``, a row of the gene embedding at
position 0); ``knowledge_homologs`` (mouse cells read knowledge at the row of
their gene's human homolog, buffer ``knowledge_homolog_index``) and
``knowledge_scale`` (a factor on the knowledge projections: the release's
embedding warm-up ``alpha``).
"""

from __future__ import annotations

from transformers import PretrainedConfig

from ..dictionary import MASK_TOKEN_ID, PAD_TOKEN_ID, SPECIES_TOKEN_IDS

KNOWLEDGE_KINDS = ("grn", "promoter", "family", "coexpression")

# The settings that make our classes compute the released checkpoints' forward.
# The order in which the release concatenates its knowledge embeddings (promoter, co-expression,
# gene family, GRN).
RELEASED_KNOWLEDGE_ORDER = ("promoter", "coexpression", "family", "grn")
RELEASED_LAYOUT = {"value_encoding": "scalar", "fusion": "mlp", "token_type_embedding": True,
                   "species_embedding": "separate", "knowledge_homologs": True,
                   "species_token_ids": {"human": 0, "mouse": 1}}

PRESETS = {
    # Demo size: trains in seconds on a CPU.
    "tiny": {"num_hidden_layers": 2, "num_attention_heads": 2, "hidden_size": 32, "intermediate_size": 64},
    "small": {"num_hidden_layers": 6, "num_attention_heads": 4, "hidden_size": 256, "intermediate_size": 1024},
    # The paper's model (L = 12, H = 12, D = 768).
    "base": {"num_hidden_layers": 12, "num_attention_heads": 12, "hidden_size": 768, "intermediate_size": 3072},
}


class GeneCompassConfig(PretrainedConfig):
    """Hyper-parameters of :class:`~genecompass.model.GeneCompassModel`.

    ``max_position_embeddings`` counts the prepended species token, so it must
    be at least ``max_length + 1`` for cells of ``max_length`` genes.
    ``knowledge_dim`` defaults to ``hidden_size`` (the knowledge embeddings are
    trained with the model's hidden size). ``species_token_ids`` maps species
    name → token id (dictionary order: human 2, mouse 3).
    """

    model_type = "genecompass"

    def __init__(
        self,
        vocab_size: int = 1000,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        hidden_act: str = "gelu",
        hidden_dropout_prob: float = 0.02,
        attention_probs_dropout_prob: float = 0.02,
        initializer_range: float = 0.02,
        layer_norm_eps: float = 1e-12,
        max_position_embeddings: int = 2049,
        knowledge_dim: int | None = None,
        knowledge_kinds=KNOWLEDGE_KINDS,
        use_values: bool = True,
        pre_layer_norm: bool = False,
        pad_token_id: int = PAD_TOKEN_ID,
        mask_token_id: int = MASK_TOKEN_ID,
        species_token_ids: dict | None = None,
        beta: float = 0.5,
        mask_probability: float = 0.15,
        classifier_dropout: float | None = None,
        value_encoding: str = "linear",
        fusion: str = "linear",
        token_type_embedding: bool = False,
        species_embedding: str = "token",
        knowledge_homologs: bool = False,
        knowledge_scale: float = 1.0,
        **kwargs,
    ):
        for name, value, allowed in (("value_encoding", value_encoding, ("linear", "scalar")),
                                     ("fusion", fusion, ("linear", "mlp")),
                                     ("species_embedding", species_embedding, ("token", "separate"))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got '{value}'")
        knowledge_kinds = list(knowledge_kinds or [])
        unknown = [k for k in knowledge_kinds if k not in KNOWLEDGE_KINDS]
        if unknown:
            raise ValueError(f"unknown knowledge kinds {unknown}; use kinds among {list(KNOWLEDGE_KINDS)}")
        if len(set(knowledge_kinds)) != len(knowledge_kinds):
            raise ValueError(f"knowledge kinds repeated: {knowledge_kinds}")
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_attention_heads "
                             f"{num_attention_heads}")
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must lie in [0, 1], got {beta}")
        if not 0.0 < mask_probability < 1.0:
            raise ValueError(f"mask_probability must lie in (0, 1), got {mask_probability}")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.max_position_embeddings = max_position_embeddings
        self.knowledge_dim = int(knowledge_dim) if knowledge_dim is not None else hidden_size
        self.knowledge_kinds = knowledge_kinds
        self.use_values = bool(use_values)
        self.pre_layer_norm = bool(pre_layer_norm)
        self.mask_token_id = mask_token_id
        self.species_token_ids = dict(species_token_ids if species_token_ids is not None else SPECIES_TOKEN_IDS)
        self.beta = float(beta)
        self.mask_probability = float(mask_probability)
        self.classifier_dropout = classifier_dropout
        self.value_encoding = value_encoding
        self.fusion = fusion
        self.token_type_embedding = bool(token_type_embedding)
        self.species_embedding = species_embedding
        self.knowledge_homologs = bool(knowledge_homologs)
        self.knowledge_scale = float(knowledge_scale)
        super().__init__(pad_token_id=pad_token_id, **kwargs)

    @property
    def species_position(self) -> int:
        """Positions the species token takes in the position table: 1 as a token, 0 when separate."""
        return 1 if self.species_embedding == "token" else 0

    @property
    def max_genes(self) -> int:
        """Longest cell (in genes) the position table allows."""
        return self.max_position_embeddings - self.species_position

    @classmethod
    def for_variant(cls, model_section: dict, variant: str, vocab_size: int,
                    knowledge_dim: int | None = None) -> GeneCompassConfig:
        """The config of one model variant of the workflow's ``model:`` section.

        ``model_section`` has ``preset``, ``max_length`` (genes per cell),
        ``overrides`` (any field) and ``variants`` (name → ``{knowledge: [...],
        values: bool}``); the vocabulary size comes from the token dictionary
        and the knowledge dim from the knowledge file.
        """
        variants = model_section.get("variants") or {}
        if variant not in variants:
            raise ValueError(f"model variant '{variant}' is not in the config's model.variants "
                             f"({list(variants)}); add it there")
        spec = variants[variant] or {}
        fields = dict(model_section.get("overrides") or {})
        fields.update(vocab_size=int(vocab_size), max_position_embeddings=int(model_section["max_length"]) + 1,
                      knowledge_kinds=list(spec.get("knowledge", KNOWLEDGE_KINDS)),
                      use_values=bool(spec.get("values", True)))
        if knowledge_dim is not None:
            fields["knowledge_dim"] = int(knowledge_dim)
        layout = model_section.get("layout", "ours")
        if layout == "released":   # exportable to the authors' code: their switches, their knowledge order
            fields.update(RELEASED_LAYOUT, max_position_embeddings=int(model_section["max_length"]))
            fields["knowledge_kinds"] = [kind for kind in RELEASED_KNOWLEDGE_ORDER if kind in fields["knowledge_kinds"]]
        elif layout != "ours":
            raise ValueError(f"model.layout must be 'ours' or 'released', got '{layout}'")
        return cls.preset(model_section["preset"], **fields)

    @classmethod
    def preset(cls, name: str, **overrides) -> GeneCompassConfig:
        """A named size (``tiny``, ``small``, ``base``) with any field overridden."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset '{name}'; use one of {list(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})
