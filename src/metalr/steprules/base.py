"""The interface every inner-loop step-size rule implements.

A rule turns the current parameters, their support-loss gradients and the support predictions into
the next parameters. Rules with learned rates (Meta-SGD, LSLR, ...) keep them in ``meta``, a dict of
tensors meta-optimised beside the initialisation; rules without (fixed, MLPLR) return an empty dict.
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

    def __init__(self, settings: Mapping[str, Any]) -> None: ...

    def init_meta(self, params: Params, inner_steps: int) -> Params:
        """Learnable tensors of the rule (empty when it has none)."""

    def step(self, meta: Params, params: Params, grads: Params, step: int,
             support: SupportState) -> tuple[Params, torch.Tensor]:
        """Return (updated params, the step size used, as a scalar tensor for the λ log)."""


def sgd(params: Params, grads: Params, rate: torch.Tensor | float) -> Params:
    return {key: params[key] - rate * grads[key] for key in grads}
