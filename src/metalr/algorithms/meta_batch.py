"""One meta-batch: the meta-gradient of the tasks' mean meta-objective, task by task or all at once.

``compute.batching`` picks the path: ``loop`` runs one task at a time (one backward per task frees
each task's graph before the next is built: the least memory, and the faster path on a CPU);
``vmap`` runs the batch through ``torch.func.vmap`` (one graph for all tasks: fewer, larger kernels,
which pays off on a GPU, where the per-task loop is bound by kernel launches); ``auto`` is vmap on
CUDA and the loop elsewhere. Both give the same meta-gradient (tested in float64).

An algorithm whose training step cannot run under vmap says so (``batches_training``): forcing vmap
with it is a config error, ``auto`` falls back to the loop for it and says so on stderr.
"""
from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from typing import Callable, ContextManager, Sequence

import numpy as np

from metalr.algorithms.base import Algorithm, Task
from metalr.algorithms.batched import batched_task_results
from metalr.steprules.base import Params, StepRule

BATCHING = ("loop", "vmap", "auto")


@dataclass(frozen=True)
class MetaBatch:
    query_loss: float  # mean over the tasks
    query_accuracy: float  # mean over the tasks
    rates: np.ndarray  # [tasks, inner steps]: each task's step sizes


def uses_vmap(setting: str, device: str, algorithm: Algorithm, notice: Callable[[str], None] | None = None) -> bool:
    """Whether ``compute.batching`` = ``setting`` batches this algorithm's training tasks on ``device``."""
    if setting not in BATCHING:
        raise ValueError(f"compute.batching must be one of {list(BATCHING)}, got {setting!r}")
    wanted = setting == "vmap" or (setting == "auto" and device == "cuda")
    if wanted and not algorithm.batches_training:
        if setting == "vmap":  # config validation refuses this; reaching here is a caller's bug
            raise ValueError(f"compute.batching is 'vmap' but algorithm {algorithm.name!r} cannot batch its tasks")
        (notice or _stderr)(f"compute.batching auto: algorithm {algorithm.name!r} cannot run its training step "
                            f"under vmap; using the per-task loop")
        return False
    return wanted


def _stderr(message: str) -> None:
    print(f"metalr: {message}", file=sys.stderr)


def _mean(values: Sequence[float]) -> float:
    # Summed task by task, as the loop always did: the logged numbers keep their bytes.
    return sum(v / len(values) for v in values)


def accumulate_meta_gradient(algorithm: Algorithm, params: Params, meta: Params, rule: StepRule,
                             tasks: Sequence[Task], steps: int, vmap: bool,
                             forward_context: Callable[[], ContextManager] = contextlib.nullcontext) -> MetaBatch:
    """Add the gradient of the tasks' mean meta-objective to the ``.grad`` of the leaves it reaches.

    ``forward_context`` wraps the forward computation only (autocast), never the outer backward.
    """
    count = len(tasks)
    if vmap:
        with forward_context():
            result = batched_task_results(algorithm, params, meta, rule, tasks, steps, training=True)
        (result.meta_objective / count).sum().backward()
        losses, accuracies = result.query_loss.tolist(), result.query_accuracy.tolist()
        rates = result.rates.detach().float().cpu().numpy()
    else:
        losses, accuracies, rates = [], [], []
        for task in tasks:
            with forward_context():
                result = algorithm.task_result(params, meta, rule, task, steps, training=True)
            # One backward per task frees each task's graph before the next is built.
            (result.meta_objective / count).backward()
            losses.append(result.query_loss.item())
            accuracies.append(result.query_accuracy.item())
            rates.append(result.rates.float().cpu().numpy())
        rates = np.stack(rates)
    return MetaBatch(query_loss=_mean(losses), query_accuracy=_mean(accuracies), rates=rates)
