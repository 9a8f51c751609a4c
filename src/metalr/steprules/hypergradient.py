"""Hypergradient descent on the inner rate (Baydin et al. 2018, SGD-HD), run online per task.

Within one task's inner loop, with g_k the support gradient at step k:
    α_0 = ``rules.hypergradient.lr``,   α_k = α_{k-1} + β <g_k, g_{k-1}>   (k >= 1),
    θ_{k+1} = θ_k - α_k g_k,
where <.,.> sums over all adapted parameters and β = ``rules.hypergradient.beta``. This is SGD-HD's
rule: ∂L(θ_k)/∂α_{k-1} = -<g_k, g_{k-1}>, and α takes one gradient step of size β on it. The rate
starts afresh at α_0 for every task (nothing is meta-learned: the rule has no ``meta``); α_{k-1} and
g_{k-1} travel to the next step in the per-task ``state``. α is not clipped, as in the paper.
Under second-order MAML the meta-gradient flows through <g_k, g_{k-1}> (it is part of the inner
computation); first-order algorithms detach the gradients and with them the rate.
β = 0 gives exactly the fixed rule with rate α_0. λ-log value: α_k (a scalar).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from metalr.steprules.base import Params, Rates, SupportState

SPEC = {
    "label": "HD",
    "learned": False,
    "settings": {
        "lr": {"default": 0.4, "exclusive_minimum": 0, "source": "[ours] the fixed rate",
               "doc": "the rate of each task's first step",
               "tune": {"low": 0.001, "high": 1.0, "log": True, "source": "[ours] the fixed rate's range"}},
        "beta": {"default": 0.001, "minimum": 0, "source": "[Baydin et al. 2018] SGD-HD's hypergradient step size",
                 "doc": "hypergradient step size; 0 gives the fixed rule",
                 "tune": {"low": 0.00001, "high": 0.1, "log": True,
                          "source": "[ours] two decades either side of SGD-HD's 0.001"}},
    },
}
RATE = "rate"
GRAD = "grad."


class Hypergradient:
    name = "hypergradient"
    learned = SPEC["learned"]

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.lr = float(settings["lr"])
        self.beta = float(settings["beta"])

    def init_meta(self, params: Params, inner_steps: int) -> Params:
        return {}

    def rates(self, meta: Params, params: Params, grads: Params, step: int, support: SupportState,
              state: Params) -> Rates:
        if state:
            alignment = sum((grads[k] * state[GRAD + k]).sum() for k in grads)
            rate = state[RATE] + self.beta * alignment
        else:  # the task's first step
            rate = torch.tensor(self.lr, dtype=support.loss.dtype, device=support.loss.device)
        return Rates(rate, {RATE: rate, **{GRAD + k: g for k, g in grads.items()}})
