"""Device and dtype choice for every model rule: from config, never hard-coded."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import torch

from .errors import InputError

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def resolve_device(device: str | torch.device = "auto", local_rank: int | None = None) -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU; ``local_rank`` picks this process's GPU.

    Asking for CUDA where torch sees none is an input error.
    """
    name = str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(None, "device", f"'{name}' requested but this torch sees no CUDA device",
                         "set device to 'cpu' or 'auto'")
    if name == "cuda" and local_rank is not None:
        return torch.device("cuda", local_rank)
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise InputError(None, "device", f"unknown device '{name}'", "use 'cpu', 'cuda' or 'auto'") from error


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise InputError(None, "dtype", f"unknown dtype '{dtype}'", f"use one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


def autocast_for(device: torch.device, dtype: str = "float32") -> tuple[Callable, bool]:
    """``(factory, use_bf16)``: ``factory()`` is a bf16 autocast context when ``dtype`` is
    ``bfloat16`` and the device supports it, else a null context (with a warning when bf16
    was asked for but is unsupported)."""
    use_bf16 = dtype == "bfloat16" and (
        device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_bf16_supported()))
    if dtype == "bfloat16" and not use_bf16:
        log.warning("bfloat16 is not supported on %s; running in float32", device)
    if use_bf16:
        return (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)), True
    return contextlib.nullcontext, False
