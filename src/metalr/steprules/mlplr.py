"""MLPLR: the personalised inner learning rate of the MLPLR paper (Eq. 4-5).

Per task and per inner step:
    L = a divergence between the support predictions and the one-hot labels (Eq. 4);
    λ = lr_max - L  if L <= lr_max,  else lr_min (Eq. 5);
    θ <- θ - λ ∇θ L_support.

Eq. 4 writes KL(p(y') || p(y)) with p(y) the one-hot label; read literally that is infinite (the
label puts zero mass where the prediction puts some). Two finite readings, ``rules.mlplr.divergence``:

- ``kl_label_pred`` (default): KL(label || prediction) averaged over the support examples,
  Σ_i Σ_c y_ic log(y_ic / p_ic) / n, which for one-hot labels equals the support cross-entropy;
  ``F.kl_div(log_softmax(logits), one_hot, reduction="batchmean")``.
- ``kl_div_mean``: the same pointwise terms averaged over examples *and* classes,
  ``F.kl_div(log_softmax(logits), one_hot)`` with PyTorch's default ``reduction="mean"``: the
  cross-entropy divided by N (the ways). Which branch of Eq. 5 is active depends on the reading: at a
  random 5-way start L ≈ ln 5 ≈ 1.61 under the first, ≈ 0.32 under the second.

By default λ is treated as a constant in the meta-gradient (``grad_through_lr: false``): the paper
does not say, and a stop-gradient keeps MLPLR's cost equal to the fixed rule's.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F

from metalr.steprules.base import Params, Rates, SupportState

SPEC = {
    "label": "MLPLR",
    "learned": False,
    "settings": {
        "lr_max": {"default": 1.0, "exclusive_minimum": 0,
                   "source": "[ours] the paper gives no value",
                   "doc": "lambda = lr_max - L while L <= lr_max (Eq. 5); below ln 5 ~ 1.61, step 1 of a 5-way task "
                          "(L ~ ln N at a random start) takes lr_min",
                   "tune": {"low": 0.1, "high": 10.0, "log": True,
                            "source": "[ours] two decades around the paper-silent value, reaching past ln N "
                                      "(ln 5 = 1.61, ln 20 = 3.00) so the first step can take lr_max - L"}},
        "lr_min": {"default": 0.4, "minimum": 0,
                   "source": "[ours] the paper gives no value; equal to the fixed rate",
                   "doc": "lambda when L > lr_max (Eq. 5); must not exceed lr_max",
                   "tune": {"low": 0.001, "high": 1.0, "log": True,
                            "source": "[ours] the fixed rate's range; a drawn lr_min above lr_max is set to lr_max"}},
        "grad_through_lr": {"default": False, "source": "[ours] the paper is silent",
                            "doc": "whether the meta-gradient flows through lambda(L)"},
        "divergence": {"default": "kl_label_pred", "choices": ["kl_label_pred", "kl_div_mean"],
                       "source": "[ours] the finite reading of Eq. 4 that equals the support cross-entropy",
                       "doc": "kl_label_pred: KL(label || prediction) averaged over examples; kl_div_mean: "
                              "F.kl_div's default reduction, also averaged over classes (= cross-entropy / N)",
                       "tune": {"choices": ["kl_label_pred", "kl_div_mean"],
                                "source": "[ours] both finite readings of Eq. 4"}},
    },
    "constraints": [["lr_min", "<=", "lr_max"]],
}


def kl_terms(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(one-hot label || softmax(logits)) per example and class: [n, N] float (nats).

    logits: [n, N] float; labels: [n] int64 in 0..N-1. Written with ``xlogy`` (0 log 0 = 0), the terms
    ``F.kl_div(log_softmax(logits), one_hot, reduction="none")`` computes, because kl_div has no vmap
    batching rule.
    """
    target = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
    return torch.special.xlogy(target, target) - target * F.log_softmax(logits, dim=-1)


DIVERGENCES = {
    "kl_label_pred": lambda terms: terms.sum() / terms.shape[0],  # reduction="batchmean"
    "kl_div_mean": lambda terms: terms.mean(),  # reduction="mean": over examples and classes
}


def personalised_rate(divergence: torch.Tensor, lr_max: float, lr_min: float) -> torch.Tensor:
    """Eq. 5, as a tensor op (no host synchronisation): 0-d in, 0-d out."""
    return torch.where(divergence <= lr_max, lr_max - divergence, torch.full_like(divergence, lr_min))


class MLPLR:
    name = "mlplr"
    learned = SPEC["learned"]

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.lr_max = float(settings["lr_max"])
        self.lr_min = float(settings["lr_min"])
        self.grad_through_lr = bool(settings["grad_through_lr"])
        self.divergence = DIVERGENCES[settings["divergence"]]
        if self.lr_min > self.lr_max:
            raise ValueError(f"rules.mlplr.lr_min ({self.lr_min}) must not exceed rules.mlplr.lr_max ({self.lr_max})")

    def init_meta(self, params: Params, inner_steps: int) -> Params:
        return {}

    def rates(self, meta: Params, params: Params, grads: Params, step: int, support: SupportState,
              state: Params) -> Rates:
        divergence = self.divergence(kl_terms(support.logits, support.labels))
        if not self.grad_through_lr:
            divergence = divergence.detach()
        return Rates(personalised_rate(divergence, self.lr_max, self.lr_min), state)
