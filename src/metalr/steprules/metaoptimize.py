"""MetaOptimize (the framework's Hessian-free variant), run online within each task's inner loop.

What the framework does (from its public reviews, /work/shared/reference/metaoptimize-reviews.txt;
the equations did not survive that export, the update is described in words): step sizes are
meta-parameters kept in log space, β = log α, adjusted while the base optimiser runs, by gradient
descent on the loss with a meta step size η. The meta-gradient is estimated causally with an
eligibility trace: h, "a trace of past weight updates" decaying at rate γ, and
"meta-gradient = correlation of h with the current gradient". A negative correlation means past
updates lowered the loss and larger steps would have lowered it more, so the step size grows; a
positive one (zig-zagging) shrinks it. "Scalar" keeps one step size, "blockwise" one per block.

Our mapping onto one task's inner loop (base algorithm SGD, meta algorithm SGD), at step k with
support gradient g_k:
    m_b = Σ_{θ in block b} <g_k, h_θ>            (0 at the task's first step, when h = 0)
    δ_b <- δ_b - η m_b,                          δ_b = 0 at the start of every task
    α_b = α_0 exp(δ_b)                           (log-space step size, ``rules.metaoptimize.lr`` = α_0)
    Δθ = -α_b g_k,   θ <- θ + Δθ
    h_θ <- γ h_θ + Δθ                            (γ = ``trace_decay``)
What we assumed: (1) h approximates ∂θ/∂β: in log space ∂Δθ/∂β = Δθ, and the Hessian term of the
exact trace, -α H h, is dropped (the Hessian-free variant) with γ standing in for its decay;
(2) the meta step comes before the base step, so the current step already uses the updated size
(IDBD's order); (3) the meta optimiser is plain SGD (the framework allows Adam, Lion, ...);
(4) blocks are the adapted parameter tensors; (5) the state (δ, h) is per task and restarts with
each task: nothing is meta-learned by the outer loop, there is no ``meta``. We store δ = β - log α_0
rather than β, so that η = 0 gives exactly α_0 (exp(0) = 1) and hence exactly the fixed rule.
Under second-order MAML the outer meta-gradient flows through the step-size updates.
λ-log value: the scalar α, or (blockwise) the element-weighted mean of the α_b.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from metalr.steprules.base import Params, Rates, SupportState

SPEC = {
    "label": "MetaOptimize",
    "learned": False,
    "settings": {
        "lr": {"default": 0.4, "exclusive_minimum": 0, "source": "[ours] the fixed rate",
               "doc": "base step size at each task's first step",
               "tune": {"low": 0.001, "high": 1.0, "log": True, "source": "[ours] the fixed rate's range"}},
        "meta_lr": {"default": 0.01, "minimum": 0,
                    "source": "[ours] the framework tunes it per problem",
                    "doc": "meta step size on the log step size; 0 gives `fixed`",
                    "tune": {"low": 0.0001, "high": 1.0, "log": True,
                             "source": "[ours] four decades: from nearly `fixed` to a unit step in log space"}},
        "trace_decay": {"default": 0.9, "minimum": 0, "maximum": 1,
                        "source": "[ours] the framework's gamma; an inner loop is 5-10 steps",
                        "doc": "decay of the trace of past updates"},
        "variant": {"default": "blockwise", "choices": ["scalar", "blockwise"],
                    "source": "[ours] blockwise was best in the reviews' tables",
                    "doc": "scalar: one step size; blockwise: one per parameter tensor"},
    },
}
LOG_RATIO = "log_ratio."
TRACE = "trace."
ALL = "all"  # the single block of the scalar variant


class MetaOptimize:
    name = "metaoptimize"
    learned = SPEC["learned"]

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.lr = float(settings["lr"])
        self.meta_lr = float(settings["meta_lr"])
        self.trace_decay = float(settings["trace_decay"])
        self.blockwise = settings["variant"] == "blockwise"

    def init_meta(self, params: Params, inner_steps: int) -> Params:
        return {}

    def block(self, key: str) -> str:
        return key if self.blockwise else ALL

    def log_ratios(self, grads: Params, support: SupportState, state: Params) -> Params:
        """δ_b after this step's meta update."""
        if state:
            correlation: Params = {}
            for k in grads:
                b = self.block(k)
                correlation[b] = correlation.get(b, 0) + (grads[k] * state[TRACE + k]).sum()
            return {b: state[LOG_RATIO + b] - self.meta_lr * c for b, c in correlation.items()}
        zero = torch.zeros((), dtype=support.loss.dtype, device=support.loss.device)  # first step: δ = 0, empty trace
        return {self.block(k): zero for k in grads}

    def rates(self, meta: Params, params: Params, grads: Params, step: int, support: SupportState,
              state: Params) -> Rates:
        log_ratio = self.log_ratios(grads, support, state)
        rates = {k: self.lr * torch.exp(log_ratio[self.block(k)]) for k in grads}
        updates = {k: -rates[k] * grads[k] for k in grads}  # the Δθ inner_update applies
        trace = {k: self.trace_decay * state[TRACE + k] + updates[k] if state else updates[k] for k in grads}
        new_state = {**{LOG_RATIO + b: v for b, v in log_ratio.items()}, **{TRACE + k: v for k, v in trace.items()}}
        return Rates(rates, new_state)
