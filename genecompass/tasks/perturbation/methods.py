"""Perturbation prediction (GEARS): the methods compared (light: read while planning)."""

GEARS_METHODS = ("gears", "genecompass_gears")
REGRESSORS = ("random_forest", "elastic_net", "knn")
FEATURES = ("go", "genecompass")
METHODS = ("train_mean", *GEARS_METHODS, *[f"{kind}_{feature}" for feature in FEATURES for kind in REGRESSORS])


def method_uses_genecompass(method: str) -> bool:
    return method.endswith("genecompass") or method == "genecompass_gears"


# Methods that read gene embeddings: they also run on every control model.
MODEL_METHODS = tuple(method for method in METHODS if method_uses_genecompass(method))
