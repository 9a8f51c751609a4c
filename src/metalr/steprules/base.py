"""The interface every inner-loop step-size rule implements, and the one update that applies it.

A rule turns the current parameters, their support-loss gradients and the support predictions into a
step size per adapted tensor (``Rates.rates``), and optionally a decay factor per tensor (ALFA's weight
decay). ``inner_update`` applies every rule the same way:

    θ_l <- d_l θ_l - α_l g_l        (d_l = 1 unless the rule gives a decay)

Rules with learned rates (Meta-SGD, LSLR, ALFA) keep them in ``meta``, a dict of tensors meta-optimised
beside the initialisation; rules without (fixed, MLPLR, ...) return an empty dict. ``init_meta``
receives only the parameters the algorithm adapts (``Algorithm.adapted_keys``: every key for MAML, the
head for ANIL), so per-parameter and per-layer rates exist exactly for those.

Online rules (hypergradient, MetaOptimize) carry per-task state from one inner step to the next in
``state``: a dict of tensors that ``inner.adapt`` starts empty for every task and threads through the
steps. Stateless rules return it unchanged. Keeping it an explicit argument (rather than a reserved key
in the params dict) keeps one code path and lets ``vmap`` and autograd see it.

Each rule module declares itself in a literal ``SPEC`` (label, ``learned``, settings with defaults,
sources and tuning ranges; ``metalr.plugins``) and is registered by one line in ``steprules/__init__.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import torch

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class SupportState:
    """What a rule may look at in one inner step.

    logits: [ways * shots, ways] float, the support predictions at the current parameters;
    labels: [ways * shots] int64 in 0..ways-1; loss: 0-d, the mean support cross-entropy (nats).
    """

    logits: torch.Tensor
    labels: torch.Tensor
    loss: torch.Tensor


@dataclass(frozen=True)
class Rates:
    """A rule's output for one inner step.

    rates: one 0-d tensor that every adapted tensor takes, or adapted key -> step size, a tensor
    broadcastable to that parameter (0-d for one rate per tensor, the parameter's shape for Meta-SGD);
    decay: adapted key -> multiplier of the parameter before the step (ALFA), or None for no decay;
    state: the rule's per-task state for the next step.
    """

    rates: torch.Tensor | Params
    state: Params = field(default_factory=dict)
    decay: Params | None = None


class StepRule(Protocol):
    name: str
    learned: bool  # whether init_meta creates tensors the outer loop must learn

    def __init__(self, settings: Mapping[str, Any]) -> None: ...

    def init_meta(self, params: Params, inner_steps: int) -> Params:
        """Learnable tensors of the rule (empty when it has none)."""

    def rates(self, meta: Params, params: Params, grads: Params, step: int, support: SupportState,
              state: Params) -> Rates:
        """The step size of each adapted tensor at inner step ``step`` (0-based); ``grads`` has the keys of
        the adapted parameters and their shapes."""


def inner_update(rule: StepRule, meta: Params, params: Params, grads: Params, step: int, support: SupportState,
                 state: Params) -> tuple[Params, torch.Tensor, Params]:
    """One inner step of any rule: (updated adapted params, the step size for the λ log (0-d), new state)."""
    out = rule.rates(meta, params, grads, step, support, state)
    rates = per_tensor(out.rates, grads)
    decay = out.decay or {}
    new = {k: (decay[k] * params[k] if k in decay else params[k]) - rates[k] * grads[k] for k in grads}
    return new, logged_rate(out.rates, params), out.state


def per_tensor(rates: torch.Tensor | Params, keys: Mapping[str, Any]) -> Params:
    """``Rates.rates`` as adapted key -> step size."""
    return dict.fromkeys(keys, rates) if isinstance(rates, torch.Tensor) else rates


def logged_rate(rates: torch.Tensor | Params, params: Params) -> torch.Tensor:
    """The λ-log value (0-d): a shared rate as it is, else the rates' mean over the adapted parameters'
    elements (each tensor's rate counted once per element; ``rates[k]`` broadcasts to ``params[k]``)."""
    if isinstance(rates, torch.Tensor):
        return rates
    total = sum(params[k].numel() for k in rates)
    return sum(rates[k].expand_as(params[k]).sum() for k in rates) / total
