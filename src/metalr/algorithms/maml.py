"""MAML (Finn et al. 2017): adapt every parameter; the meta-gradient is exact (second order)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from metalr.algorithms.base import Task, TaskResult, score
from metalr.algorithms.inner import adapt
from metalr.models.base import Backbone
from metalr.steprules.base import Params, StepRule


SPEC = {
    "label": "MAML",
    "trains_rule_meta": True,  # whether the meta-gradient reaches a rule's learned rates
    "batches_training": True,  # whether the training step runs under torch.func.vmap (compute.batching)
    "differentiates_inner_loop": True,  # the meta-gradient flows through the inner updates (second order)
}

@dataclass(frozen=True)
class MAML:
    backbone: Backbone
    name: str = "maml"
    first_order: bool = False
    trains_rule_meta: ClassVar[bool] = SPEC["trains_rule_meta"]
    batches_training: ClassVar[bool] = SPEC["batches_training"]

    def adapted_keys(self, params: Params) -> list[str]:
        return list(params)

    def task_result(self, params: Params, meta: Params, rule: StepRule, task: Task, steps: int,
                    training: bool) -> TaskResult:
        # Outside training no meta-gradient is taken, so building the second-order graph is waste.
        first_order = self.first_order or not training
        forward = self.backbone.forward
        adapted, rates = adapt(forward, params, self.adapted_keys(params), task.xs, task.ys, rule, meta, steps,
                               first_order)
        return score(forward(adapted, task.xq), task.yq, rates)
