"""Tiny models and tasks for the unit tests (float64: second-order MAML is ill-conditioned in float32)."""
from __future__ import annotations

import torch

from metalr.algorithms.base import Task
from metalr.models import get_backbone

CONV4 = get_backbone("conv4")


def tiny_params(ways: int = 3, seed: int = 0, image_size: int = 16, filters: int = 3) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    params = CONV4.init(gen, 1, image_size, ways, filters=filters, dtype=torch.float64)
    return {k: v.requires_grad_(True) for k, v in params.items()}


def tiny_task(ways: int = 3, shots: int = 2, queries: int = 2, seed: int = 1, image_size: int = 16) -> Task:
    gen = torch.Generator().manual_seed(seed)
    xs = torch.rand(ways * shots, 1, image_size, image_size, generator=gen, dtype=torch.float64)
    xq = torch.rand(ways * queries, 1, image_size, image_size, generator=gen, dtype=torch.float64)
    ys = torch.arange(ways).repeat_interleave(shots)
    yq = torch.arange(ways).repeat_interleave(queries)
    return Task(xs, ys, xq, yq)
