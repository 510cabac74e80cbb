"""Cross-species annotation with CAME: the methods compared (light: read while planning)."""

METHODS = ("came", "genecompass_came")


def method_uses_genecompass(method: str) -> bool:
    return method == "genecompass_came"
