"""Reptile (Nichol et al. 2018): move the initialisation towards each task's adapted parameters.

Per task, every parameter is adapted on the support set with the step-size rule, without a
second-order graph (Reptile never differentiates through the inner loop). The meta-gradient is
θ - W, W the adapted parameters; it reaches the outer optimiser as the gradient of the surrogate
<θ, stop_grad(θ - W)>, so the train loop (its Adam step, batch averaging, checkpoints) is unchanged.
Choices [ours]: Adam on the Reptile direction (the paper's few-shot runs use Adam in the inner loop
and SGD outside); adaptation on the support set only, the query set is scored for the logs.
The direction θ - W carries no gradient for a rule's learned rates, so config validation refuses
rules that learn them (``trains_rule_meta``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from metalr.algorithms.base import Task, TaskResult, score
from metalr.algorithms.inner import adapt
from metalr.models.base import Backbone
from metalr.steprules.base import Params, StepRule


SPEC = {
    "label": "Reptile",
    "trains_rule_meta": False,  # whether the meta-gradient reaches a rule's learned rates
    "batches_training": True,  # whether the training step runs under torch.func.vmap (compute.batching)
    "differentiates_inner_loop": False,  # the meta-gradient is theta - W, never differentiated
}

@dataclass(frozen=True)
class Reptile:
    backbone: Backbone
    name: str = "reptile"
    trains_rule_meta: ClassVar[bool] = SPEC["trains_rule_meta"]
    batches_training: ClassVar[bool] = SPEC["batches_training"]

    def adapted_keys(self, params: Params) -> list[str]:
        return list(params)

    def task_result(self, params: Params, meta: Params, rule: StepRule, task: Task, steps: int,
                    training: bool) -> TaskResult:
        forward = self.backbone.forward
        adapted, rates = adapt(forward, params, self.adapted_keys(params), task.xs, task.ys, rule, meta, steps,
                               first_order=True)
        direction = {k: (params[k] - adapted[k]).detach() for k in params}
        surrogate = sum((params[k] * direction[k]).sum() for k in params)
        with torch.no_grad():
            logits = forward(adapted, task.xq)
        return score(logits, task.yq, rates, meta_objective=surrogate)
