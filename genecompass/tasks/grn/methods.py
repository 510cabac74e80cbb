"""GRN inference: the methods compared (light: read while planning)."""

# Rankings that need no model; every model variant adds cosine_<variant> and deepsem_prior_<variant>.
BASE_METHODS = ("random", "pearson", "spearman", "genie3", "deepsem")
EMBEDDING_KINDS = ("cosine", "deepsem_prior")
EMBEDDING_METHOD_PREFIXES = tuple(f"{kind}_" for kind in EMBEDDING_KINDS)


def methods(variants) -> list[str]:
    """Every method name: the baselines, then each embedding kind for each model variant."""
    return [*BASE_METHODS, *[f"{kind}_{variant}" for kind in EMBEDDING_KINDS for variant in variants]]


def method_variant(method: str) -> str | None:
    """The embedding variant an embedding method uses (``cosine_untrained`` → ``untrained``), else None."""
    for prefix in EMBEDDING_METHOD_PREFIXES:
        if method.startswith(prefix):
            return method[len(prefix):]
    return None
