"""Meta-SGD (Li et al. 2017): a learned inner rate for every element of every adapted parameter.

    θ <- θ - α ⊙ ∇θ L_support,   α a tensor of θ's shape, initialised to ``rules.meta-sgd.lr``,
    meta-learned with the initialisation (outer Adam, keys ``rule.lr.<param>``).

The same α is used at every inner step (as in the paper), so evaluation may run more steps than
training. λ-log value: the mean of α over all adapted elements (``weighted_mean_rate``).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from metalr.steprules.base import Params, SupportState, weighted_mean_rate

PREFIX = "lr."


class MetaSGD:
    name = "meta-sgd"
    learned = True

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.lr = float(settings["lr"])

    def init_meta(self, params: Params, inner_steps: int) -> Params:
        return {PREFIX + k: torch.full_like(v.detach(), self.lr) for k, v in params.items()}

    def layer_rates(self, meta: Params, params: Params, grads: Params, step: int, support: SupportState,
                    state: Params) -> Params:
        return {k: meta[PREFIX + k] for k in grads}

    def step(self, meta: Params, params: Params, grads: Params, step: int, support: SupportState,
             state: Params) -> tuple[Params, torch.Tensor, Params]:
        rates = self.layer_rates(meta, params, grads, step, support, state)
        new = {k: params[k] - rates[k] * grads[k] for k in grads}
        return new, weighted_mean_rate(rates, params), state
