"""Reduced-precision options for speed on a GPU: TF32 matmuls and convolutions, bf16 autocast.

Both are off by default (``compute.tf32: false``, ``compute.autocast: none``): the paper grid runs in
full float32. TF32 uses PyTorch's ``fp32_precision`` switches (the legacy ``allow_tf32`` flags must
not be mixed with them); ``false`` sets matmuls and cuDNN convolutions to IEEE float32, which is
stricter than PyTorch's own default (cuDNN convolutions in TF32). Autocast wraps the forward
computation (inner loop and query scoring); the outer backward runs outside it, as PyTorch advises.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, Mapping

import torch

AUTOCAST_DTYPES = {"none": None, "bf16": torch.bfloat16}


def configure(compute: Mapping[str, Any]) -> None:
    """Apply ``compute.tf32`` (a process-wide switch; it only affects CUDA kernels)."""
    precision = "tf32" if compute["tf32"] else "ieee"
    torch.backends.cuda.matmul.fp32_precision = precision
    torch.backends.cudnn.conv.fp32_precision = precision


def forward_context(compute: Mapping[str, Any], device: str) -> Callable[[], ContextManager]:
    """A factory of the context the forward computation runs in: ``torch.autocast`` or nothing."""
    dtype = AUTOCAST_DTYPES[compute["autocast"]]
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device, dtype=dtype)
