"""GeneCompass model: configuration, encoder, pre-training and fine-tuning heads.

Importing this package registers the ``genecompass`` model type with the
``transformers`` Auto classes (AutoConfig, AutoModel, AutoModelForPreTraining,
AutoModelForSequenceClassification, AutoModelForTokenClassification).
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .configuration import KNOWLEDGE_KINDS, PRESETS, GeneCompassConfig
from .modeling import (
    GeneCompassForPretraining,
    GeneCompassForSequenceClassification,
    GeneCompassForTokenClassification,
    GeneCompassModel,
    GeneCompassPreTrainedModel,
    GeneCompassPretrainingOutput,
)


def _register() -> None:
    try:
        AutoConfig.register("genecompass", GeneCompassConfig)
    except ValueError:  # already registered (module reloaded)
        return
    AutoModel.register(GeneCompassConfig, GeneCompassModel)
    AutoModelForPreTraining.register(GeneCompassConfig, GeneCompassForPretraining)
    AutoModelForSequenceClassification.register(GeneCompassConfig, GeneCompassForSequenceClassification)
    AutoModelForTokenClassification.register(GeneCompassConfig, GeneCompassForTokenClassification)


_register()

__all__ = [
    "KNOWLEDGE_KINDS", "PRESETS", "GeneCompassConfig", "GeneCompassForPretraining",
    "GeneCompassForSequenceClassification", "GeneCompassForTokenClassification", "GeneCompassModel",
    "GeneCompassPreTrainedModel", "GeneCompassPretrainingOutput",
]
