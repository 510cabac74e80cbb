"""The annotation task; `methods` is what the workflow plans with."""
