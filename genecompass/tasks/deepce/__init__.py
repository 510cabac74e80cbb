"""The deepce task; `methods` is what the workflow plans with."""
