"""Cross-species annotation with CAME: the methods compared (light: read while planning)."""

METHODS = ("came", "genecompass_came")
MODEL_METHODS = ("genecompass_came",)   # read gene embeddings: also run on every control model


def method_uses_genecompass(method: str) -> bool:
    return method == "genecompass_came"
