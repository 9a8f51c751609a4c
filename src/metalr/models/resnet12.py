"""Functional ResNet-12 (MetaOptNet's, Lee et al. 2019; after TADAM and SNAIL), the field's second backbone.

Four residual blocks of widths ``model.filters`` x (1, 2.5, 5, 10), floored (64 gives 64-160-320-640).
Each block: three conv3x3 (stride 1, padding 1, no bias), each followed by BatchNorm, the first two by
leaky ReLU (slope 0.1); a conv1x1 + BatchNorm shortcut; the sum, leaky ReLU and a 2x2 max-pool. Then a
global average pool and a linear head. As MetaOptNet's ``ResNet12_embedding.py``, except:

- BatchNorm uses batch statistics and keeps no running statistics, like Conv-4 (the MAML convention;
  ``metalr.models.base``);
- no DropBlock or dropout (MetaOptNet's regularisers; a stochastic layer would need its own seeded RNG
  stream inside the inner loop) [ours];
- a global average pool before the head (MetaOptNet's own default flattens 5x5x640 at 84x84), so the
  head has 10 x filters inputs at any image size;
- the leaky ReLU after a block's sum is applied after the pooling: the same function (leaky ReLU is
  increasing, so it commutes with the max) on a quarter of the elements.

Initialisation [MetaOptNet]: conv weights He-normal with fan-out (``kaiming_normal_(mode='fan_out',
nonlinearity='leaky_relu')``, gain sqrt(2)), BN weight 1 and bias 0; the head as Conv-4's [ours].
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from metalr.models import scaled_widths
from metalr.models.base import Backbone, Params, feature_side, linear_head

SPEC = {
    "label": "ResNet-12",
    "source": "[MetaOptNet] Lee et al. 2019, models/ResNet12_embedding.py (without DropBlock)",
    "width_multipliers": [1, 2.5, 5, 10],  # of model.filters: 64 gives 64-160-320-640
}
CONVS_PER_BLOCK = 3
LEAKY_SLOPE = 0.1  # [MetaOptNet] nn.LeakyReLU(0.1)


def he_normal_fan_out(generator: torch.Generator, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """N(0, 2 / fan_out), fan_out = out_channels * kernel area, drawn in float64 from ``generator``."""
    fan_out = shape[0] * math.prod(shape[2:])
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * math.sqrt(2.0 / fan_out)).to(dtype)


@dataclass(frozen=True)
class ResNet12(Backbone):
    def init(self, generator: torch.Generator, channels: int, image_size: int, ways: int, filters: int = 64,
             dtype: torch.dtype = torch.float32) -> Params:
        """Keys, per block b = 0..3 of width w: ``block{b}.conv{i}.weight`` [w, in, 3, 3] and
        ``block{b}.bn{i}.weight`` / ``.bias`` [w] for i = 0..2, ``block{b}.shortcut.weight`` [w, in, 1, 1],
        ``block{b}.shortcut_bn.weight`` / ``.bias`` [w]; ``head.weight`` [ways, 10 * filters], ``head.bias`` [ways].
        Raises ValueError for images smaller than 16 pixels."""
        feature_side(image_size)
        params: Params = {}
        in_channels = channels
        for block, width in enumerate(scaled_widths(SPEC["width_multipliers"], filters)):
            prefix = f"block{block}."
            for conv in range(CONVS_PER_BLOCK):
                conv_in = in_channels if conv == 0 else width
                params[f"{prefix}conv{conv}.weight"] = he_normal_fan_out(generator, (width, conv_in, 3, 3), dtype)
                params.update(_unit_batch_norm(f"{prefix}bn{conv}", width, dtype))
            params[f"{prefix}shortcut.weight"] = he_normal_fan_out(generator, (width, in_channels, 1, 1), dtype)
            params.update(_unit_batch_norm(f"{prefix}shortcut_bn", width, dtype))
            in_channels = width
        return {**params, **linear_head(generator, ways, in_channels, dtype)}

    def features(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Images [N, C, H, W] -> features [N, 10 * filters] (global average of the last block's map)."""
        for block in range(len(SPEC["width_multipliers"])):
            x = self.residual_block(params, f"block{block}.", x)
        return x.mean(dim=(-2, -1))

    def residual_block(self, params: Params, prefix: str, x: torch.Tensor) -> torch.Tensor:
        """[N, C_in, H, W] -> [N, width, H // 2, W // 2]."""
        shortcut = self.batch_norm(F.conv2d(x, params[f"{prefix}shortcut.weight"]),
                                   params[f"{prefix}shortcut_bn.weight"], params[f"{prefix}shortcut_bn.bias"])
        out = x
        for conv in range(CONVS_PER_BLOCK):
            out = F.conv2d(out, params[f"{prefix}conv{conv}.weight"], padding=1)
            out = self.batch_norm(out, params[f"{prefix}bn{conv}.weight"], params[f"{prefix}bn{conv}.bias"])
            if conv < CONVS_PER_BLOCK - 1:
                out = F.leaky_relu(out, LEAKY_SLOPE)
        return F.leaky_relu(self.max_pool_2x2(out + shortcut), LEAKY_SLOPE)


def _unit_batch_norm(name: str, width: int, dtype: torch.dtype) -> Params:
    return {f"{name}.weight": torch.ones(width, dtype=dtype), f"{name}.bias": torch.zeros(width, dtype=dtype)}
