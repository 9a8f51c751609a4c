"""A fixed inner learning rate, the same for every task and step (MAML's rule): θ <- θ - lr ∇θ L_support."""
from __future__ import annotations

from typing import Any, Mapping

import torch

from metalr.steprules.base import Params, Rates, SupportState

SPEC = {
    "label": "fixed",
    "learned": False,
    "settings": {
        "lr": {"default": 0.4, "source": "[MAML]", "exclusive_minimum": 0,
               "doc": "inner rate; MAML's for Omniglot (the paper does not give its fixed rate)",
               "tune": {"low": 0.001, "high": 1.0, "log": True,
                        "source": "[MAML] 0.01 (miniImageNet) to 0.4 (Omniglot), widened by a decade below"}},
    },
}


class FixedRate:
    name = "fixed"
    learned = SPEC["learned"]

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.lr = float(settings["lr"])

    def init_meta(self, params: Params, inner_steps: int) -> Params:
        return {}

    def rates(self, meta: Params, params: Params, grads: Params, step: int, support: SupportState,
              state: Params) -> Rates:
        rate = torch.tensor(self.lr, dtype=support.loss.dtype, device=support.loss.device)
        return Rates(rate, state)
