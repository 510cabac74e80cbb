"""The grn task; `methods` is what the workflow plans with."""
