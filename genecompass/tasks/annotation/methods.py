"""Single-species cell-type annotation: the methods compared (light: read while planning)."""

METHODS = ("genecompass", "genecompass_no_pretraining", "logistic_regression")
# Methods that read the pretrained model: they also run on every control model (no_pretraining is the
# untrained control already).
MODEL_METHODS = ("genecompass",)


def method_uses_model(method: str) -> bool:
    """Whether a method fine-tunes the pretrained model (the others need no model file)."""
    return method != "logistic_regression"
