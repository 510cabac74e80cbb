"""The cpa task; `methods` is what the workflow plans with."""
