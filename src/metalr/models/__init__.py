"""Registry of backbones: adding one is one module plus one line here.

Each backbone module declares its label, source and width multipliers in a literal ``SPEC``
(``metalr.plugins``) and implements ``metalr.models.base.Backbone`` (functional: parameters are a flat
dict of tensors). ``model.name`` selects one for training, evaluation and the gradient-fidelity
analysis, ``analysis.cost.backbone`` / ``analysis.scaling.backbone`` for those, ``metalr bench
--backbone`` for the benchmark. Importing this package does not import torch: config validation and
workflow planning read the registry; ``get_backbone`` imports the implementation when a job needs it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from metalr.plugins import Registry

if TYPE_CHECKING:
    from metalr.models.base import Backbone

BACKBONES = Registry("backbone", {
    "conv4": "metalr.models.conv4:Conv4",
    "resnet12": "metalr.models.resnet12:ResNet12",
}, required_flags=("width_multipliers",))


def scaled_widths(multipliers: list[float], filters: int) -> list[int]:
    """``floor(m * filters)`` for each multiplier m: the channel widths of a backbone's blocks."""
    return [int(m * filters) for m in multipliers]


def widths(name: str, filters: int) -> list[int]:
    """Channel widths of the backbone ``name``'s blocks for base width ``filters`` (``model.filters``),
    from its SPEC: Conv-4 at 64 gives 64-64-64-64, ResNet-12 at 64 gives 64-160-320-640.

    Raises KeyError for an unknown backbone (naming the valid ones)."""
    return scaled_widths(BACKBONES[name].spec["width_multipliers"], filters)


def get_backbone(name: str) -> "Backbone":
    """The backbone ``name`` (a ``metalr.models.base.Backbone``) in its plain form; the batched path
    asks it for its vmap-safe form (``for_vmap``). Imports torch.

    Raises KeyError for an unknown backbone (naming the valid ones)."""
    return BACKBONES[name].load()()
