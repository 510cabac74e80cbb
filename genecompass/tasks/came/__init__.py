"""The came task; `methods` is what the workflow plans with."""
