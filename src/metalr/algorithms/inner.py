"""The inner loop, shared by every algorithm, by training and by evaluation.

``adapt`` is a pure function of a dict of tensors. Gradients come from ``torch.func.grad``, so the
same code runs per task, under ``torch.func.vmap`` and under outer autograd (second order). First
order is one switch: the inner gradients (and the support predictions a rule sees) are computed off
the outer graph, so the adapted parameters depend on the initialisation only through the identity
path.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from metalr.steprules.base import Params, StepRule, SupportState, inner_update

Predict = Callable[[Params, torch.Tensor], torch.Tensor]


def adapt(predict: Predict, params: Params, adapt_keys: list[str], x: torch.Tensor, y: torch.Tensor,
          rule: StepRule, meta: Params, steps: int, first_order: bool,
          proximal: float = 0.0) -> tuple[Params, torch.Tensor]:
    """Run ``steps`` inner updates of the ``adapt_keys`` entries on the support set (x, y).

    Returns the adapted parameters (all keys) and the step size of every step (a 1-D tensor).
    The rule's per-task state starts empty and is threaded through the steps. ``proximal`` = λ adds
    λ/2 ||φ - θ||² (θ the starting point, a constant) to the minimised loss (iMAML's inner problem);
    the rule still sees the plain support cross-entropy and predictions.
    """
    fixed = {k: v for k, v in params.items() if k not in adapt_keys}
    fast = {k: params[k] for k in adapt_keys}
    anchor = {k: v.detach() for k, v in fast.items()}

    def support_loss(fast_params: Params) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        logits = predict({**fixed, **fast_params}, x)
        loss = F.cross_entropy(logits, y)
        penalty = sum(((fast_params[k] - anchor[k]) ** 2).sum() for k in fast_params) if proximal else 0.0
        return loss + proximal / 2 * penalty, (loss, logits)

    rates, state = [], {}
    for step in range(steps):
        if first_order:
            # The inner gradient is a constant for the meta-gradient: computing it off the outer graph
            # avoids building (and then discarding) the second-order graph, FOMAML's whole saving.
            with torch.no_grad():
                grads, (loss, logits) = torch.func.grad(support_loss, has_aux=True)(
                    {k: v.detach() for k, v in fast.items()})
        else:
            grads, (loss, logits) = torch.func.grad(support_loss, has_aux=True)(fast)
        fast, rate, state = inner_update(rule, meta, fast, grads, step, SupportState(logits, y, loss), state)
        rates.append(rate)
    return {**fixed, **fast}, torch.stack(rates)
