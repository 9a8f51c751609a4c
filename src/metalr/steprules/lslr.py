"""LSLR, MAML++'s learned per-layer, per-step inner rates (Antoniou et al. 2018).

    θ_l <- θ_l - α_{l,k} ∇θ_l L_support   at inner step k,
    one scalar α_{l,k} per adapted parameter tensor l and step k, initialised to ``rules.lslr.lr`` and
    meta-learned with the initialisation (outer Adam, keys ``rule.lr.<param>``, shape (inner_steps,)).

Evaluation may run more inner steps than training (the MLPLR protocol: 5 vs 10); steps beyond the
trained ones reuse the last trained step's rates [ours; MAML++ evaluates with the training steps].
λ-log value: the mean of α_{l,k} over the adapted elements (each layer weighted by its size).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from metalr.steprules.base import Params, Rates, SupportState

SPEC = {
    "label": "LSLR",
    "learned": True,
    "settings": {
        "lr": {"default": 0.4, "exclusive_minimum": 0,
               "source": "[ours] the fixed rate (MAML++ 2018 starts LSLR at its MAML inner rate)",
               "doc": "initial rate of every layer and step",
               "tune": {"low": 0.001, "high": 1.0, "log": True, "source": "[ours] the fixed rate's range"}},
    },
}
PREFIX = "lr."


class LSLR:
    name = "lslr"
    learned = SPEC["learned"]

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.lr = float(settings["lr"])

    def init_meta(self, params: Params, inner_steps: int) -> Params:
        return {PREFIX + k: torch.full((inner_steps,), self.lr, dtype=v.dtype, device=v.device)
                for k, v in params.items()}

    def rates(self, meta: Params, params: Params, grads: Params, step: int, support: SupportState,
              state: Params) -> Rates:
        return Rates({k: meta[PREFIX + k][min(step, meta[PREFIX + k].shape[0] - 1)] for k in grads}, state)
