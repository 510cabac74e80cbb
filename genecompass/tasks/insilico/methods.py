"""In-silico perturbation: the outputs of a dataset (light: read while planning)."""

OUTPUTS = ("deletion_tests.tsv", "state_shift.json", "candidates.tsv")


def drivers_in_config(entry: dict) -> bool:
    """Whether an in-silico dataset's ``drivers`` is a state -> genes mapping (not a file or a download locator)."""
    drivers = entry["drivers"]
    return isinstance(drivers, dict) and not {"url", "path"} & set(drivers)
