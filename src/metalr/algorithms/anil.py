"""ANIL (Raghu et al. 2019): the inner loop adapts only the linear head.

The features do not change during adaptation, so they are computed once per task for the support
and the query set; the meta-gradient is second order through the head updates and reaches the
feature extractor through those features.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from metalr.algorithms.base import Task, TaskResult, score
from metalr.algorithms.inner import adapt
from metalr.models.base import Backbone
from metalr.steprules.base import Params, StepRule


SPEC = {
    "label": "ANIL",
    "trains_rule_meta": True,  # whether the meta-gradient reaches a rule's learned rates
    "batches_training": True,  # whether the training step runs under torch.func.vmap (compute.batching)
    "differentiates_inner_loop": True,  # the meta-gradient flows through the head's inner updates (second order)
}

@dataclass(frozen=True)
class ANIL:
    backbone: Backbone
    name: str = "anil"
    first_order: bool = False
    trains_rule_meta: ClassVar[bool] = SPEC["trains_rule_meta"]
    batches_training: ClassVar[bool] = SPEC["batches_training"]

    def adapted_keys(self, params: Params) -> list[str]:
        return self.backbone.head_keys(params)

    def task_result(self, params: Params, meta: Params, rule: StepRule, task: Task, steps: int,
                    training: bool) -> TaskResult:
        head = {k: params[k] for k in self.adapted_keys(params)}
        support_features = self.backbone.features(params, task.xs)
        query_features = self.backbone.features(params, task.xq)
        first_order = self.first_order or not training
        adapted, rates = adapt(self.backbone.head, head, list(head), support_features, task.ys, rule, meta, steps,
                               first_order)
        return score(self.backbone.head(adapted, query_features), task.yq, rates)
