"""MLPLR: the personalised inner learning rate of the MLPLR paper (Eq. 4-5).

Per task and per inner step:
    L = KL divergence between the support predictions and the one-hot labels, averaged over the
        support examples (Eq. 4);
    λ = lr_max - L  if L <= lr_max,  else lr_min (Eq. 5);
    θ <- θ - λ ∇θ L_support.

Eq. 4 writes KL(p(y') || p(y)) with p(y) the one-hot label; read literally that is infinite (the
label puts zero mass where the prediction puts some). We take the finite reading KL(label || prediction),
which is what ``torch.nn.functional.kl_div(log_softmax(logits), one_hot)`` computes and which, for a
one-hot label, equals the support cross-entropy. By default λ is treated as a constant in the
meta-gradient (``grad_through_lr: false``): the paper does not say, and a stop-gradient keeps MLPLR's
cost equal to the fixed rule's.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F

from metalr.steprules.base import Params, SupportState, same_rate, sgd


def kl_label_prediction(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(one-hot label || softmax(logits)), averaged over examples.

    The same sum as ``F.kl_div(log_softmax(logits), one_hot, reduction="batchmean")``, written with
    ``xlogy`` (0 log 0 = 0) because kl_div has no vmap batching rule.
    """
    target = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
    pointwise = torch.special.xlogy(target, target) - target * F.log_softmax(logits, dim=-1)
    return pointwise.sum() / logits.shape[0]


def personalised_rate(divergence: torch.Tensor, lr_max: float, lr_min: float) -> torch.Tensor:
    """Eq. 5, as a tensor op (no host synchronisation)."""
    return torch.where(divergence <= lr_max, lr_max - divergence, torch.full_like(divergence, lr_min))


class MLPLR:
    name = "mlplr"
    learned = False

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.lr_max = float(settings["lr_max"])
        self.lr_min = float(settings["lr_min"])
        self.grad_through_lr = bool(settings["grad_through_lr"])
        if self.lr_min > self.lr_max:
            raise ValueError(f"rules.mlplr.lr_min ({self.lr_min}) must not exceed rules.mlplr.lr_max ({self.lr_max})")

    def init_meta(self, params: Params, inner_steps: int) -> Params:
        return {}

    def rate(self, support: SupportState) -> torch.Tensor:
        divergence = kl_label_prediction(support.logits, support.labels)
        if not self.grad_through_lr:
            divergence = divergence.detach()
        return personalised_rate(divergence, self.lr_max, self.lr_min)

    def step(self, meta: Params, params: Params, grads: Params, step: int, support: SupportState,
             state: Params) -> tuple[Params, torch.Tensor, Params]:
        rate = self.rate(support)
        return sgd(params, grads, rate), rate, state

    def layer_rates(self, meta: Params, params: Params, grads: Params, step: int, support: SupportState,
                    state: Params) -> Params:
        return same_rate(grads, self.rate(support))
