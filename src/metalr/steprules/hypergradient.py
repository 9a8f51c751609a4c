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

from metalr.steprules.base import Params, SupportState, same_rate, sgd

RATE = "rate"
GRAD = "grad."


class Hypergradient:
    name = "hypergradient"
    learned = False

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.lr = float(settings["lr"])
        self.beta = float(settings["beta"])

    def init_meta(self, params: Params, inner_steps: int) -> Params:
        return {}

    def rate(self, grads: Params, support: SupportState, state: Params) -> torch.Tensor:
        if state:
            alignment = sum((grads[k] * state[GRAD + k]).sum() for k in grads)
            return state[RATE] + self.beta * alignment
        return torch.tensor(self.lr, dtype=support.loss.dtype, device=support.loss.device)  # first step of the task

    def step(self, meta: Params, params: Params, grads: Params, step: int, support: SupportState,
             state: Params) -> tuple[Params, torch.Tensor, Params]:
        rate = self.rate(grads, support, state)
        return sgd(params, grads, rate), rate, {RATE: rate, **{GRAD + k: g for k, g in grads.items()}}

    def layer_rates(self, meta: Params, params: Params, grads: Params, step: int, support: SupportState,
                    state: Params) -> Params:
        return same_rate(grads, self.rate(grads, support, state))
