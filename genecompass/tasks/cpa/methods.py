"""Drug dose response (CPA): the methods compared (light: read while planning)."""

METHODS = ("cpa", "genecompass_cpa", "train_mean", "ridge_fingerprint")


def method_uses_genecompass(method: str) -> bool:
    return method == "genecompass_cpa"
