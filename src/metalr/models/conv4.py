"""Functional Conv-4: parameters are a flat dict of tensors, the forward pass a pure function.

Four blocks of conv3x3 (stride 1, padding 1) -> BatchNorm -> ReLU -> 2x2 max-pool, then a linear head
(computed as max-pool then ReLU, which is the same function).
BatchNorm always normalises with the statistics of the batch it sees and keeps no running
statistics (the MAML convention, "transductive" BN): support and query sets are each normalised by
their own statistics, in training and evaluation alike.

Two kernels depend on whether the forward runs under ``torch.func.vmap`` (code that vmaps it enters
``under_vmap()``; algorithms/batched.py does):

- BatchNorm's affine part. Under vmap it is applied by hand (``x * weight + bias``): the batch rule of
  ``F.batch_norm(weight=, bias=)`` drops second-order terms (measured: ~4e-4 relative error in
  float64 and non-zero conv-bias meta-gradients, which must be exactly 0 because BN cancels a
  constant shift). Outside vmap the fused affine ``F.batch_norm`` is exact and faster
  (docs/profile-cpu.md).
- The 2x2 max-pool on a CPU outside vmap (``max_pool_2x2``).
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Iterator

import torch
import torch.nn.functional as F

BLOCKS = 4
HEAD_PREFIX = "head."
Params = dict[str, torch.Tensor]


def feature_size(image_size: int) -> int:
    """Spatial side after four floor-halving max-pools."""
    side = image_size
    for _ in range(BLOCKS):
        side //= 2
    if side < 1:
        raise ValueError(f"image size {image_size} is too small for {BLOCKS} max-pool blocks (need >= 16)")
    return side


def init(generator: torch.Generator, in_channels: int, image_size: int, ways: int, filters: int = 64,
         dtype: torch.dtype = torch.float32) -> Params:
    """He-uniform conv weights, PyTorch-default biases and head; drawn only from ``generator``
    (never from a global RNG) so the seed alone fixes the initialisation."""
    def uniform(shape: tuple[int, ...], bound: float) -> torch.Tensor:
        return (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1).mul(bound).to(dtype)

    params: Params = {}
    channels = in_channels
    for block in range(BLOCKS):
        fan_in = channels * 9
        params[f"conv{block}.weight"] = uniform((filters, channels, 3, 3), math.sqrt(6.0 / fan_in))
        params[f"conv{block}.bias"] = uniform((filters,), 1.0 / math.sqrt(fan_in))
        params[f"bn{block}.weight"] = torch.ones(filters, dtype=dtype)
        params[f"bn{block}.bias"] = torch.zeros(filters, dtype=dtype)
        channels = filters
    features = filters * feature_size(image_size) ** 2
    params[HEAD_PREFIX + "weight"] = uniform((ways, features), 1.0 / math.sqrt(features))
    params[HEAD_PREFIX + "bias"] = torch.zeros(ways, dtype=dtype)
    return params


def head_keys(params: Params) -> list[str]:
    return [k for k in params if k.startswith(HEAD_PREFIX)]


def feature_keys(params: Params) -> list[str]:
    return [k for k in params if not k.startswith(HEAD_PREFIX)]


_UNDER_VMAP = contextvars.ContextVar("conv4_under_vmap", default=False)


@contextlib.contextmanager
def under_vmap() -> Iterator[None]:
    """Run Conv-4 in its vmap-safe form for the duration (see the module docstring)."""
    token = _UNDER_VMAP.set(True)
    try:
        yield
    finally:
        _UNDER_VMAP.reset(token)


def batch_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """BatchNorm on the statistics of ``x`` itself, then the affine part ``weight``, ``bias``."""
    if _UNDER_VMAP.get():
        x = F.batch_norm(x, None, None, training=True)
        return x * weight[:, None, None] + bias[:, None, None]
    return F.batch_norm(x, None, None, weight, bias, training=True)


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """2x2 max-pool, stride 2.

    On a CPU, PyTorch's NCHW max-pool kernel is scalar: 29 ms for [75, 64, 32, 32] against 2 ms for
    the channels-last one (one thread). So the window maxima are located by the channels-last kernel
    (off the graph) and gathered from ``x``: the same values and the same gradient routing, whose
    backward (scatter) and double backward (gather) autograd derives. The meta-gradient equals
    ``F.max_pool2d``'s bit for bit in float64 (tested).
    """
    if x.device.type != "cpu" or _UNDER_VMAP.get():
        return F.max_pool2d(x, 2)
    with torch.no_grad():
        _, indices = torch.ops.aten.max_pool2d_with_indices(
            x.detach().contiguous(memory_format=torch.channels_last), [2, 2], [2, 2])
    indices = indices.contiguous()
    return x.flatten(-2).gather(-1, indices.flatten(-2)).view(indices.shape)


def features(params: Params, x: torch.Tensor) -> torch.Tensor:
    for block in range(BLOCKS):
        x = F.conv2d(x, params[f"conv{block}.weight"], params[f"conv{block}.bias"], padding=1)
        x = batch_norm(x, params[f"bn{block}.weight"], params[f"bn{block}.bias"])
        # ReLU after the pooling: the same values and gradients (both are monotone; a window whose
        # maximum is negative gives 0 either way) on a quarter of the elements. Measured 5% less CPU
        # time per second-order meta-iteration (docs/profile-cpu.md).
        x = F.relu(max_pool_2x2(x))
    return x.flatten(1)


def head(params: Params, feats: torch.Tensor) -> torch.Tensor:
    return F.linear(feats, params[HEAD_PREFIX + "weight"], params[HEAD_PREFIX + "bias"])


def forward(params: Params, x: torch.Tensor) -> torch.Tensor:
    return head(params, features(params, x))
