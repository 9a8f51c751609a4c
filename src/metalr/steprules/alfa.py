"""ALFA (Baik et al. 2020): a meta-learned network sets per-layer, per-step rates and weight decay.

At inner step k, for adapted parameter tensors ("layers") l = 1..L with gradients g_l:
    τ_k = [mean(g_1), ..., mean(g_L), mean(θ_1), ..., mean(θ_L)]        (the paper's layer statistics)
    (a_k, b_k) = net(τ_k)                                              (3-layer MLP, ReLU, width 2L)
    α_{k,l} = α0_{k,l} a_{k,l},   β_{k,l} = β0_{k,l} b_{k,l}           (learned per-step bases, as in the paper)
    θ_l <- β_{k,l} θ_l - α_{k,l} g_l
The network and the bases α0 (initialised to ``rules.alfa.lr``) and β0 (initialised to 1) are
meta-learned with the initialisation. The network's last layer starts at weight 0 and bias 1 [ours],
so ALFA starts exactly as the fixed rule (multipliers 1, no decay) and the hidden layers (drawn from
a generator seeded by ``rules.alfa.seed``) learn once the last layer moves. Steps beyond the trained
ones (evaluation may run more) reuse the last trained step's bases [ours].
λ-log value: the element-weighted mean of the α_{k,l} over the adapted parameters.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from metalr.steprules.base import Params, Rates, SupportState

SPEC = {
    "label": "ALFA",
    "learned": True,
    "settings": {
        "lr": {"default": 0.4, "exclusive_minimum": 0,
               "source": "[ours] the fixed rate (ALFA 2020 initialises at its MAML rate)",
               "doc": "initial per-step base rate alpha0",
               "tune": {"low": 0.001, "high": 1.0, "log": True, "source": "[ours] the fixed rate's range"}},
        "seed": {"default": 1, "minimum": 0, "source": "[ours]",
                 "doc": "seed of the MLP's hidden-layer initialisation (its last layer starts at 0, bias 1)"},
    },
}
ALPHA, BETA, NET = "alpha", "beta", "net."
NET_LAYERS = 3


class ALFA:
    name = "alfa"
    learned = SPEC["learned"]

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.lr = float(settings["lr"])
        self.seed = int(settings["seed"])

    def init_meta(self, params: Params, inner_steps: int) -> Params:
        some = next(iter(params.values()))
        like = {"dtype": some.dtype, "device": some.device}
        width = 2 * len(params)
        gen = torch.Generator().manual_seed(self.seed)
        meta = {ALPHA: torch.full((inner_steps, len(params)), self.lr, **like),
                BETA: torch.ones(inner_steps, len(params), **like)}
        bound = 1 / math.sqrt(width)
        for i in range(NET_LAYERS - 1):  # PyTorch's default Linear initialisation, drawn from our generator only
            for part, shape in (("weight", (width, width)), ("bias", (width,))):
                draw = torch.rand(shape, generator=gen, dtype=torch.float64)  # same draw whatever the default dtype
                meta[f"{NET}{i}.{part}"] = ((draw * 2 - 1) * bound).to(**like)
        meta[f"{NET}{NET_LAYERS - 1}.weight"] = torch.zeros(width, width, **like)
        meta[f"{NET}{NET_LAYERS - 1}.bias"] = torch.ones(width, **like)
        return meta

    def coefficients(self, meta: Params, params: Params, grads: Params, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(α_{k,l}, β_{k,l}) for the layers l in ``grads``' order."""
        keys = list(grads)
        x = torch.cat([torch.stack([grads[k].mean() for k in keys]), torch.stack([params[k].mean() for k in keys])])
        for i in range(NET_LAYERS):
            x = F.linear(x, meta[f"{NET}{i}.weight"], meta[f"{NET}{i}.bias"])
            x = F.relu(x) if i < NET_LAYERS - 1 else x
        multiplier_alpha, multiplier_beta = x[: len(keys)], x[len(keys):]
        row = min(step, meta[ALPHA].shape[0] - 1)
        return meta[ALPHA][row] * multiplier_alpha, meta[BETA][row] * multiplier_beta

    def rates(self, meta: Params, params: Params, grads: Params, step: int, support: SupportState,
              state: Params) -> Rates:
        alpha, beta = self.coefficients(meta, params, grads, step)
        return Rates({k: alpha[i] for i, k in enumerate(grads)}, state, decay={k: beta[i] for i, k in enumerate(grads)})
