"""What an algorithm computes for one task, and the interface algorithms share."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from metalr.steprules.base import Params, StepRule


@dataclass(frozen=True)
class Task:
    """One N-way episode: support (xs, ys) and query (xq, yq); labels are 0..N-1."""

    xs: torch.Tensor
    ys: torch.Tensor
    xq: torch.Tensor
    yq: torch.Tensor


@dataclass(frozen=True)
class TaskResult:
    query_loss: torch.Tensor  # scalar; MAML-style algorithms: differentiable w.r.t. the initialisation (and rule meta)
    query_accuracy: torch.Tensor  # scalar in [0, 1]
    query_class_accuracy: torch.Tensor  # [N] accuracy on each class's queries, in label order
    rates: torch.Tensor  # step size used at each inner step
    # The scalar the outer optimiser differentiates: its gradient is the algorithm's meta-gradient. The query loss
    # itself for MAML, FOMAML and ANIL; a surrogate for algorithms whose meta-gradient is not a loss's (Reptile).
    meta_objective: torch.Tensor


class Algorithm(Protocol):
    name: str
    # Whether the meta-gradient reaches the rule's learned rates (``meta``); rules that learn them need it.
    trains_rule_meta: bool
    # Whether the training step runs under torch.func.vmap (``compute.batching``; algorithms/meta_batch.py).
    batches_training: bool

    def adapted_keys(self, params: Params) -> list[str]:
        """The parameter keys the inner loop updates (the rule's learned rates exist for these only)."""

    def task_result(self, params: Params, meta: Params, rule: StepRule, task: Task, steps: int,
                    training: bool) -> TaskResult:
        """Adapt to the task's support set, then score the query set."""


def score(logits: torch.Tensor, labels: torch.Tensor, rates: torch.Tensor,
          meta_objective: torch.Tensor | None = None) -> TaskResult:
    """Query loss, accuracy and accuracy per class (``logits`` [Q, N], ``labels`` [Q] in 0..N-1, every class
    with at least one query); the meta-objective is the query loss unless the algorithm gives its own."""
    loss = torch.nn.functional.cross_entropy(logits, labels)
    correct = logits.argmax(dim=-1) == labels
    accuracy = correct.to(logits.dtype).mean()
    # [Q, N] membership instead of a scatter: the same code runs per task and under vmap. At least float32,
    # so that a count of correct queries is exact under bf16 autocast.
    dtype = torch.promote_types(logits.dtype, torch.float32)
    members = (labels[:, None] == torch.arange(logits.shape[-1], device=labels.device)).to(dtype)
    class_accuracy = (members * correct.to(dtype)[:, None]).sum(dim=0) / members.sum(dim=0)
    return TaskResult(query_loss=loss, query_accuracy=accuracy.detach(), query_class_accuracy=class_accuracy,
                      rates=rates.detach(), meta_objective=loss if meta_objective is None else meta_objective)
