"""The interface every inner-loop step-size rule implements.

A rule turns the current parameters, their support-loss gradients and the support predictions into
the next parameters. Rules with learned rates (Meta-SGD, LSLR, ALFA) keep them in ``meta``, a dict of
tensors meta-optimised beside the initialisation; rules without (fixed, MLPLR, ...) return an empty dict.

``init_meta`` receives only the parameters the algorithm adapts (``Algorithm.adapted_keys``: every
key for MAML, the head for ANIL), so per-parameter and per-layer rates exist exactly for those.

Online rules (hypergradient, MetaOptimize) carry per-task state from one inner step to the next in
``state``: a dict of tensors that ``inner.adapt`` starts empty for every task and threads through
the steps. Stateless rules return it unchanged. Keeping it an explicit argument (rather than a
reserved key in the params dict) keeps one code path and lets ``vmap`` and autograd see it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol

import torch

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class SupportState:
    """What a rule may look at in one inner step: the support predictions and labels."""

    logits: torch.Tensor
    labels: torch.Tensor
    loss: torch.Tensor  # mean cross-entropy over the support examples


class StepRule(Protocol):
    name: str
    learned: bool  # whether init_meta creates tensors the outer loop must learn

    def __init__(self, settings: Mapping[str, Any]) -> None: ...

    def init_meta(self, params: Params, inner_steps: int) -> Params:
        """Learnable tensors of the rule (empty when it has none)."""

    def step(self, meta: Params, params: Params, grads: Params, step: int, support: SupportState,
             state: Params) -> tuple[Params, torch.Tensor, Params]:
        """Return (updated params, the step size used as a scalar tensor for the λ log, new state)."""

    def layer_rates(self, meta: Params, params: Params, grads: Params, step: int, support: SupportState,
                    state: Params) -> Params:
        """The step size ``step`` gives each adapted tensor (broadcastable to it), from the same inputs:
        what the step-size trajectories (``metalr.train.rates``) record."""


def sgd(params: Params, grads: Params, rate: torch.Tensor | float) -> Params:
    return {key: params[key] - rate * grads[key] for key in grads}


def same_rate(grads: Params, rate: torch.Tensor) -> Params:
    """``layer_rates`` of a rule with one rate for every tensor."""
    return dict.fromkeys(grads, rate)


def weighted_mean_rate(rates: Params, params: Params) -> torch.Tensor:
    """The λ-log value of a rule with several rates: their mean over the adapted parameters'
    elements (each parameter's rate counted once per element). ``rates[k]`` broadcasts to ``params[k]``."""
    total = sum(params[k].numel() for k in rates)
    return sum(rates[k].expand_as(params[k]).sum() for k in rates) / total
