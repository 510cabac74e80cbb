"""Gene dosage sensitivity: the methods compared (light: read while planning)."""

# Token classification fine-tuned from the pretrained model, and the same without pretraining.
FINETUNE_METHODS = ("genecompass", "genecompass_no_pretraining")
METHODS = (*FINETUNE_METHODS, "knowledge_logistic")
# Methods that read the pretrained model: they also run on every control model (no_pretraining is the
# untrained control already).
MODEL_METHODS = ("genecompass",)
