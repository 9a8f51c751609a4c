"""iMAML (Rajeswaran et al. 2019): implicit meta-gradients of a proximally regularised inner problem.

Per task, every parameter is adapted from θ on  L_support(φ) + λ/2 ||φ - θ||²  with the step-size
rule (no second-order graph: the implicit gradient does not depend on the path). At the inner
solution φ*, dφ*/dθ = (I + H/λ)^{-1} with H the Hessian of L_support at φ*, so the meta-gradient is
    x = (I + H/λ)^{-1} ∇φ L_query(φ*),
solved by ``cg_steps`` of conjugate gradient on Hessian-vector products (double backward). It is
exact when the inner loop reaches φ*; with a few inner steps it is iMAML's approximation. x reaches
the outer optimiser as the gradient of the surrogate <θ, stop_grad(x)>. λ = ``algorithms.imaml.lam``,
cg_steps = ``algorithms.imaml.cg_steps``. The rule's learned rates get no gradient (the implicit
gradient does not see the path), so config validation refuses rules that learn them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
import torch.nn.functional as F

from metalr.algorithms.base import Task, TaskResult, score
from metalr.algorithms.inner import adapt
from metalr.models.base import Backbone
from metalr.steprules.base import Params, StepRule


SPEC = {
    "label": "iMAML",
    "trains_rule_meta": False,  # whether the meta-gradient reaches a rule's learned rates
    "batches_training": False,  # whether the training step runs under torch.func.vmap (compute.batching)
    "differentiates_inner_loop": False,  # the implicit gradient does not see the inner path
    "settings": {
        "lam": {"default": 2.0, "exclusive_minimum": 0, "source": "[iMAML 2019] their Omniglot setting",
                "doc": "proximal strength lambda"},
        "cg_steps": {"default": 5, "minimum": 1, "source": "[iMAML 2019]",
                     "doc": "conjugate-gradient steps for the implicit gradient"},
    },
}

def _dot(a: Params, b: Params) -> torch.Tensor:
    return sum((a[k] * b[k]).sum() for k in a)


def implicit_gradient(support_loss: Callable[[Params], torch.Tensor], solution: Params, query_grad: Params,
                      lam: float, cg_steps: int) -> Params:
    """(I + H/λ)^{-1} query_grad by conjugate gradient, H the Hessian of ``support_loss`` at ``solution``."""
    with torch.enable_grad():
        phi = {k: v.detach().requires_grad_(True) for k, v in solution.items()}
        grads = torch.autograd.grad(support_loss(phi), list(phi.values()), create_graph=True)

        def operator(v: Params) -> Params:
            hv = torch.autograd.grad(grads, list(phi.values()), grad_outputs=[v[k] for k in phi], retain_graph=True)
            return {k: v[k] + h / lam for k, h in zip(phi, hv)}

        b = {k: g.detach() for k, g in query_grad.items()}
        x = {k: torch.zeros_like(v) for k, v in b.items()}
        r, p = dict(b), dict(b)
        rs = _dot(r, r)
        for _ in range(cg_steps):
            if rs <= torch.finfo(rs.dtype).tiny:  # converged exactly; another step would divide 0 by 0
                break
            ap = {k: v.detach() for k, v in operator(p).items()}
            step = rs / _dot(p, ap)
            x = {k: x[k] + step * p[k] for k in x}
            r = {k: r[k] - step * ap[k] for k in r}
            rs_next = _dot(r, r)
            p = {k: r[k] + (rs_next / rs) * p[k] for k in p}
            rs = rs_next
    return x


@dataclass(frozen=True)
class IMAML:
    backbone: Backbone
    lam: float  # algorithms.imaml.lam (SPEC)
    cg_steps: int  # algorithms.imaml.cg_steps (SPEC)
    name: str = "imaml"
    trains_rule_meta: ClassVar[bool] = SPEC["trains_rule_meta"]
    # The implicit gradient's CG differentiates a fresh leaf with torch.autograd.grad, which functorch's
    # vmap refuses; evaluation (no implicit gradient) batches.
    batches_training: ClassVar[bool] = SPEC["batches_training"]

    def adapted_keys(self, params: Params) -> list[str]:
        return list(params)

    def task_result(self, params: Params, meta: Params, rule: StepRule, task: Task, steps: int,
                    training: bool) -> TaskResult:
        forward = self.backbone.forward
        adapted, rates = adapt(forward, params, self.adapted_keys(params), task.xs, task.ys, rule, meta, steps,
                               first_order=True, proximal=self.lam)
        solution = {k: v.detach() for k, v in adapted.items()}
        if not training:
            with torch.no_grad():
                return score(forward(solution, task.xq), task.yq, rates)
        with torch.enable_grad():
            phi = {k: v.clone().requires_grad_(True) for k, v in solution.items()}
            logits = forward(phi, task.xq)
            query = F.cross_entropy(logits, task.yq)
            query_grad = dict(zip(phi, torch.autograd.grad(query, list(phi.values()))))
        direction = implicit_gradient(lambda p: F.cross_entropy(forward(p, task.xs), task.ys), solution,
                                      query_grad, self.lam, self.cg_steps)
        surrogate = sum((params[k] * direction[k]).sum() for k in params)
        return score(logits.detach(), task.yq, rates, meta_objective=surrogate)
