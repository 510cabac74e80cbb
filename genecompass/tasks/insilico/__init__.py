"""The insilico task; `methods` is what the workflow plans with."""
