"""Gene expression profiling (DeepCE): the methods compared (light: read while planning)."""

METHODS = ("deepce", "genecompass_deepce", "train_mean", "ridge_fingerprint")


def method_uses_genecompass(method: str) -> bool:
    return method == "genecompass_deepce"
