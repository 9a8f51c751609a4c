"""The interface every backbone implements, and the layers Conv-4 and ResNet-12 share.

A backbone is functional: its parameters are a flat dict of tensors (``Params``), and ``features`` /
``head`` / ``forward`` are pure functions of them, so ``torch.func.grad`` and ``vmap`` apply and the
inner loop adapts any subset of keys (ANIL: ``head_keys`` only).

BatchNorm always normalises with the statistics of the batch it sees and keeps no running statistics
(the MAML convention, "transductive" BN): support and query sets are each normalised by their own
statistics, in training and evaluation alike.

Two kernels depend on whether the forward runs under ``torch.func.vmap``. The batched path
(``metalr.algorithms.batched``) asks the backbone for its vmap-safe form, ``backbone.for_vmap()``:

- BatchNorm's affine part. In the vmap-safe form it is applied by hand (``x * weight + bias``): the
  batch rule of ``F.batch_norm(weight=, bias=)`` treats the saved batch statistics as constants when it
  forms the BN-weight gradient, so the outer (second-order) backward drops terms (measured: ~4e-4
  relative error in float64 and non-zero conv-bias meta-gradients for Conv-4, which must be exactly 0
  because BN cancels a constant shift). In the plain form the fused affine ``F.batch_norm`` is exact
  and faster (docs/profile-cpu.md).
- The 2x2 max-pool on a CPU in the plain form (``gathered_max_pool_2x2``); ``F.max_pool2d`` otherwise.
"""
from __future__ import annotations

import abc
import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Params = dict[str, torch.Tensor]
HEAD_PREFIX = "head."
POOLED_BLOCKS = 4  # both backbones halve the image side four times


def feature_side(image_size: int) -> int:
    """Spatial side after four floor-halving 2x2 max-pools.

    Raises ValueError if the image is smaller than 16 pixels (a side would reach 0)."""
    side = image_size
    for _ in range(POOLED_BLOCKS):
        side //= 2
    if side < 1:
        raise ValueError(f"image size {image_size} is too small for {POOLED_BLOCKS} max-pool blocks (need >= 16)")
    return side


def uniform(generator: torch.Generator, shape: tuple[int, ...], bound: float, dtype: torch.dtype) -> torch.Tensor:
    """U(-bound, bound) drawn in float64 from ``generator`` only (never a global RNG), then cast to ``dtype``."""
    return (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1).mul(bound).to(dtype)


def linear_head(generator: torch.Generator, ways: int, features: int, dtype: torch.dtype) -> Params:
    """The classifier ``head.weight`` [ways, features] ~ U(±1/sqrt(features)) (PyTorch's ``nn.Linear``
    default) and ``head.bias`` [ways] = 0."""
    return {HEAD_PREFIX + "weight": uniform(generator, (ways, features), 1.0 / math.sqrt(features), dtype),
            HEAD_PREFIX + "bias": torch.zeros(ways, dtype=dtype)}


def gathered_max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """2x2 max-pool, stride 2, of ``x`` [N, C, H, W] -> [N, C, H // 2, W // 2], for a CPU outside vmap.

    On a CPU, PyTorch's NCHW max-pool kernel is scalar: 29 ms for [75, 64, 32, 32] against 2 ms for
    the channels-last one (one thread). So the window maxima are located by the channels-last kernel
    (off the graph) and gathered from ``x``: the same values and the same gradient routing, whose
    backward (scatter) and double backward (gather) autograd derives. Values, gradients and
    Hessian-vector products equal ``F.max_pool2d``'s bit for bit in float64 (tested).
    """
    with torch.no_grad():
        _, indices = torch.ops.aten.max_pool2d_with_indices(
            x.detach().contiguous(memory_format=torch.channels_last), [2, 2], [2, 2])
    indices = indices.contiguous()
    return x.flatten(-2).gather(-1, indices.flatten(-2)).view(indices.shape)


@dataclass(frozen=True)
class Backbone(abc.ABC):
    """A functional feature extractor plus a linear head (``head.weight``, ``head.bias``).

    ``vmap_safe``: the form for ``torch.func.vmap`` (see the module docstring); ``for_vmap()`` returns it.
    Implementations give ``init`` and ``features``; the rest is shared.
    """

    vmap_safe: bool = False

    @abc.abstractmethod
    def init(self, generator: torch.Generator, channels: int, image_size: int, ways: int, filters: int = 64,
             dtype: torch.dtype = torch.float32) -> Params:
        """Parameters for ``channels`` x ``image_size`` x ``image_size`` images and ``ways`` classes, base width
        ``filters`` (``model.filters``), drawn only from ``generator`` so the seed alone fixes them.

        Raises ValueError for images smaller than 16 pixels."""

    @abc.abstractmethod
    def features(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Images ``x`` [N, channels, H, W] float -> features [N, D] (D fixed by ``init``'s arguments)."""

    def head(self, params: Params, feats: torch.Tensor) -> torch.Tensor:
        """Features [N, D] -> logits [N, ways]."""
        return F.linear(feats, params[HEAD_PREFIX + "weight"], params[HEAD_PREFIX + "bias"])

    def forward(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Images [N, channels, H, W] -> logits [N, ways]."""
        return self.head(params, self.features(params, x))

    def head_keys(self, params: Params) -> list[str]:
        """The classifier's keys (what ANIL adapts)."""
        return [k for k in params if k.startswith(HEAD_PREFIX)]

    def feature_keys(self, params: Params) -> list[str]:
        return [k for k in params if not k.startswith(HEAD_PREFIX)]

    def for_vmap(self) -> "Backbone":
        """The same function with kernels whose vmap batch rules are exact to second order."""
        return dataclasses.replace(self, vmap_safe=True)

    def batch_norm(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """BatchNorm of ``x`` [N, C, H, W] on its own batch statistics, then the affine ``weight``, ``bias`` [C]."""
        if self.vmap_safe:
            x = F.batch_norm(x, None, None, training=True)
            return x * weight[:, None, None] + bias[:, None, None]
        return F.batch_norm(x, None, None, weight, bias, training=True)

    def max_pool_2x2(self, x: torch.Tensor) -> torch.Tensor:
        """2x2 max-pool, stride 2: [N, C, H, W] -> [N, C, H // 2, W // 2] (floor)."""
        if x.device.type != "cpu" or self.vmap_safe:
            return F.max_pool2d(x, 2)
        return gathered_max_pool_2x2(x)
