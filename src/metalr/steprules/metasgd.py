"""Meta-SGD (Li et al. 2017): a learned inner rate for every element of every adapted parameter.

    θ <- θ - α ⊙ ∇θ L_support,   α a tensor of θ's shape, initialised to ``rules.meta-sgd.lr``,
    meta-learned with the initialisation (outer Adam, keys ``rule.lr.<param>``).

The same α is used at every inner step (as in the paper), so evaluation may run more steps than
training. λ-log value: the mean of α over all adapted elements.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from metalr.steprules.base import Params, Rates, SupportState

SPEC = {
    "label": "Meta-SGD",
    "learned": True,
    "settings": {
        "lr": {"default": 0.4, "exclusive_minimum": 0,
               "source": "[ours] the fixed rate, so Meta-SGD starts as `fixed` (Meta-SGD 2017 draws it from "
                         "U[0.005, 0.1])",
               "doc": "initial rate of every element",
               "tune": {"low": 0.001, "high": 1.0, "log": True, "source": "[ours] the fixed rate's range"}},
    },
}
PREFIX = "lr."


class MetaSGD:
    name = "meta-sgd"
    learned = SPEC["learned"]

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.lr = float(settings["lr"])

    def init_meta(self, params: Params, inner_steps: int) -> Params:
        return {PREFIX + k: torch.full_like(v.detach(), self.lr) for k, v in params.items()}

    def rates(self, meta: Params, params: Params, grads: Params, step: int, support: SupportState,
              state: Params) -> Rates:
        return Rates({k: meta[PREFIX + k] for k in grads}, state)
