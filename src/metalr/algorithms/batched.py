"""Many tasks at once: ``torch.func.vmap`` over an algorithm's per-task computation.

The per-task code path is reused unchanged (pure functions over dicts of tensors), so the batched
meta-gradient equals the per-task loop's. Tasks of one batch must share their shapes (same ways,
shots and queries), which every sampled batch does.
"""
from __future__ import annotations

from typing import Sequence

import torch

from metalr.algorithms.base import Algorithm, Task, TaskResult
from metalr.models import conv4
from metalr.steprules.base import Params, StepRule


def stack_tasks(tasks: Sequence[Task]) -> Task:
    return Task(*(torch.stack([getattr(t, field) for t in tasks]) for field in ("xs", "ys", "xq", "yq")))


def batched_task_results(algorithm: Algorithm, params: Params, meta: Params, rule: StepRule,
                         tasks: Sequence[Task], steps: int, training: bool) -> TaskResult:
    """One TaskResult whose fields carry a leading task dimension."""
    def one(xs: torch.Tensor, ys: torch.Tensor, xq: torch.Tensor, yq: torch.Tensor):
        result = algorithm.task_result(params, meta, rule, Task(xs, ys, xq, yq), steps, training)
        return (result.query_loss, result.query_accuracy, result.query_class_accuracy, result.rates,
                result.meta_objective)

    batch = stack_tasks(tasks)
    with conv4.under_vmap():
        loss, accuracy, class_accuracy, rates, objective = torch.func.vmap(one)(batch.xs, batch.ys, batch.xq, batch.yq)
    return TaskResult(query_loss=loss, query_accuracy=accuracy, query_class_accuracy=class_accuracy, rates=rates,
                      meta_objective=objective)
