"""The outer optimiser's step size: the schedule's, or adapted online by MetaOptimize (``train.outer_lr_adaptation``).

MetaOptimize (the framework of /work/shared/reference/metaoptimize-reviews.txt) treats step sizes as
meta-parameters in log space, β = log α, tuned while the base optimiser runs, Hessian-free: a
decaying trace h of past weight updates stands in for ∂θ/∂β, and the meta-gradient is the
correlation of h with the current gradient. ``steprules/metaoptimize.py`` maps it onto one task's
inner loop (base optimiser SGD, state per task); here it runs on the outer loop, over the whole of
meta-training, with Adam as the base optimiser. At outer iteration t, with meta-gradient g_t
(``.grad`` after the backward passes) and per block b (``variant``: one block for ``scalar``, one per
trainable tensor for ``blockwise``):

    m_b = Σ_{θ in b} <g_t, h_θ>                 (h = 0 at the start: the first step is plain Adam)
    δ_b <- δ_b - η sign(m_b)                    (η = ``meta_lr``)
    α_b = α_sched(t) exp(δ_b)                   (α_sched: ``train.outer_lr`` and its schedule)
    Δθ = Adam's step with step size α_b;  θ <- θ + Δθ
    h_θ <- γ h_θ + Δθ                           (γ = ``trace_decay``)

Why the sign: L(θ_{t+1}) depends on β through every past update; in log space ∂Δθ_s/∂β = Δθ_s, so
∂L/∂β ≈ <g_t, Σ_s γ^{t-s} Δθ_s> = <g_t, h> (the Hessian terms of the exact derivative dropped, as in
the framework's Hessian-free variant). If the current gradient opposes the past updates (<g, h> < 0:
they moved downhill and a longer step would have gone further) the step size grows; if it agrees
(<g, h> > 0: the steps overshot) it shrinks. The meta step comes before the base step (IDBD's order),
and δ is stored rather than β so that η = 0 keeps exactly the scheduled step size (exp(0) = 1): the
run is then bit-for-bit plain Adam. Adam's own normalisation is left as it is; only its step size moves.
The meta optimiser is signSGD (Lion without momentum) [ours]: the framework uses normalised meta
optimisers (Lion, or the base's own Adam, in the reviews' tables), and plain SGD on the raw
correlation is unstable here (its size scales with the step size itself: on our quadratic test a
growing step fed back until it overflowed). With the sign, η is the most log α moves per iteration.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch

Params = dict[str, torch.Tensor]
ALL = "all"  # the single block of the scalar variant


class ScheduledStep:
    """``method: none``: every parameter takes the scheduled step size."""

    def __init__(self, trainable: Params) -> None:
        self.trainable = trainable

    @property
    def blocks(self) -> list[str]:
        return []

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.trainable.values())}]

    def before_step(self, optimizer: torch.optim.Optimizer, scheduled_lr: float) -> None:
        for group in optimizer.param_groups:
            group["lr"] = scheduled_lr

    def after_step(self) -> None:
        pass

    def step_sizes(self, optimizer: torch.optim.Optimizer) -> list[float]:
        return []

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


class MetaOptimizeStep(ScheduledStep):
    """``method: metaoptimize``: log step sizes per block, adapted by the trace correlation (see module doc)."""

    def __init__(self, trainable: Params, settings: Mapping[str, Any]) -> None:
        super().__init__(trainable)
        self.meta_lr = float(settings["meta_lr"])
        self.trace_decay = float(settings["trace_decay"])
        self.block_keys = ({k: [k] for k in trainable} if settings["variant"] == "blockwise"
                           else {ALL: list(trainable)})
        self.log_ratio = {b: 0.0 for b in self.block_keys}
        self.trace = {k: torch.zeros_like(v, memory_format=torch.preserve_format).detach() for k, v in trainable.items()}
        self.before: Params = {}

    @property
    def blocks(self) -> list[str]:
        return list(self.block_keys)

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": [self.trainable[k] for k in keys]} for keys in self.block_keys.values()]

    def correlation(self, block: str) -> float:
        total = 0.0
        for k in self.block_keys[block]:
            grad = self.trainable[k].grad
            if grad is not None:
                total += float((grad.double() * self.trace[k].double()).sum())
        return total

    def before_step(self, optimizer: torch.optim.Optimizer, scheduled_lr: float) -> None:
        for group, block in zip(optimizer.param_groups, self.block_keys):
            correlation = self.correlation(block)
            if correlation:  # sign(0) = 0: no trace yet (the first step)
                self.log_ratio[block] -= self.meta_lr * math.copysign(1.0, correlation)
            group["lr"] = scheduled_lr * math.exp(self.log_ratio[block])
        self.before = {k: v.detach().clone() for k, v in self.trainable.items()}

    def after_step(self) -> None:
        with torch.no_grad():
            for k, v in self.trainable.items():
                self.trace[k].mul_(self.trace_decay).add_(v - self.before[k])
        self.before = {}

    def step_sizes(self, optimizer: torch.optim.Optimizer) -> list[float]:
        """The step size of each block in the last step (``blocks`` order)."""
        return [group["lr"] for group in optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"log_ratio": dict(self.log_ratio), "trace": {k: v.clone() for k, v in self.trace.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.log_ratio = dict(state["log_ratio"])
        with torch.no_grad():
            for k, v in state["trace"].items():
                self.trace[k].copy_(v)


def make_outer_step(tcfg: Mapping[str, Any], trainable: Params) -> ScheduledStep:
    settings = tcfg["outer_lr_adaptation"]
    if settings["method"] == "metaoptimize":
        return MetaOptimizeStep(trainable, settings)
    return ScheduledStep(trainable)
