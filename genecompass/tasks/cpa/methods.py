"""Drug dose response (CPA): the methods compared (light: read while planning)."""

METHODS = ("cpa", "genecompass_cpa", "train_mean", "ridge_fingerprint")
MODEL_METHODS = ("genecompass_cpa",)   # read gene embeddings: also run on every control model


def method_uses_genecompass(method: str) -> bool:
    return method == "genecompass_cpa"
