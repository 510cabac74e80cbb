"""Gene expression profiling (DeepCE): the methods compared (light: read while planning)."""

METHODS = ("deepce", "genecompass_deepce", "train_mean", "ridge_fingerprint")
MODEL_METHODS = ("genecompass_deepce",)   # read gene embeddings: also run on every control model


def method_uses_genecompass(method: str) -> bool:
    return method == "genecompass_deepce"
