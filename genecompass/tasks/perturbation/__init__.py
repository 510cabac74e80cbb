"""The perturbation task; `methods` is what the workflow plans with."""
