"""A fixed inner learning rate, the same for every task and step (MAML's rule)."""
from __future__ import annotations

from typing import Any, Mapping

import torch

from metalr.steprules.base import Params, SupportState, same_rate, sgd


class FixedRate:
    name = "fixed"
    learned = False

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.lr = float(settings["lr"])

    def init_meta(self, params: Params, inner_steps: int) -> Params:
        return {}

    def rate(self, support: SupportState) -> torch.Tensor:
        return torch.tensor(self.lr, dtype=support.loss.dtype, device=support.loss.device)

    def step(self, meta: Params, params: Params, grads: Params, step: int, support: SupportState,
             state: Params) -> tuple[Params, torch.Tensor, Params]:
        rate = self.rate(support)
        return sgd(params, grads, rate), rate, state

    def layer_rates(self, meta: Params, params: Params, grads: Params, step: int, support: SupportState,
                    state: Params) -> Params:
        return same_rate(grads, self.rate(support))
