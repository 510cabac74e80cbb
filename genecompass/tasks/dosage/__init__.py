"""The dosage task; `methods` is what the workflow plans with."""
