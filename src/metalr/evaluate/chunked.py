"""Adapting and scoring test tasks in chunks: several tasks at once under ``torch.func.vmap``.

A chunk of 1 is the per-task path itself (no vmap). Larger chunks issue fewer, larger kernels, which
pays off on a GPU; on a CPU vmap is slower and holds every task of the chunk in memory at once, so
``evaluate.task_chunk: auto`` is 1 there. On CUDA, auto measures the peak memory of one task's
adaptation and takes as many tasks per chunk as fit in ``evaluate.chunk_memory_mib``. Accuracies
equal the per-task path's (tested in float64; in float32 the batched kernels may round differently).
"""
from __future__ import annotations

import contextlib
import itertools
from typing import Any, Callable, ContextManager, Iterable, Iterator, Mapping, NamedTuple

import numpy as np
import torch

from metalr import devices
from metalr.algorithms.base import Algorithm, Task
from metalr.algorithms.batched import batched_task_results
from metalr.steprules.base import Params, StepRule


def chunk_for_budget(per_task_mib: float, budget_mib: float) -> int:
    """How many tasks, each peaking at ``per_task_mib``, fit in ``budget_mib`` (at least 1)."""
    return max(1, int(budget_mib // max(per_task_mib, 1e-9)))


class TaskScore(NamedTuple):
    accuracy: float  # query accuracy of the task
    class_accuracy: np.ndarray  # [ways] float64: accuracy on each class's queries, in label order
    rates: np.ndarray  # [steps] float32: the step size of each inner step


def score_tasks(algorithm: Algorithm, params: Params, meta: Params, rule: StepRule, tasks: Iterable[Task],
                steps: int, chunk: int,
                forward_context: Callable[[], ContextManager] = contextlib.nullcontext) -> Iterator[TaskScore]:
    """Each task's scores, in order; ``chunk`` tasks are adapted at once."""
    tasks = iter(tasks)
    while batch := list(itertools.islice(tasks, chunk)):
        # Entered per chunk, not around the yields: the caller's code must not run under no_grad.
        # torch.func.grad inside still differentiates; no_grad only stops an outer graph being kept.
        with torch.no_grad(), forward_context():
            if len(batch) == 1:
                result = algorithm.task_result(params, meta, rule, batch[0], steps, training=False)
                scored = [TaskScore(float(result.query_accuracy), _numpy(result.query_class_accuracy, np.float64),
                                    _numpy(result.rates, np.float32))]
            else:
                results = batched_task_results(algorithm, params, meta, rule, batch, steps, training=False)
                scored = [TaskScore(*fields) for fields in zip(
                    results.query_accuracy.tolist(), _numpy(results.query_class_accuracy, np.float64),
                    _numpy(results.rates, np.float32))]
        yield from scored


def _numpy(tensor: torch.Tensor, dtype: type) -> np.ndarray:
    # to the CPU first: some devices have no float64
    return tensor.detach().cpu().to(torch.float64).numpy().astype(dtype)


def resolve_chunk(ecfg: Mapping[str, Any], device: str, run_one_task: Callable[[], Any]) -> int:
    """``evaluate.task_chunk``: a number as given; auto is 1 off CUDA, else as many tasks as fit in
    ``evaluate.chunk_memory_mib``, from the peak memory ``run_one_task`` takes."""
    if ecfg["task_chunk"] != "auto":
        return int(ecfg["task_chunk"])
    if device != "cuda":
        return 1
    return chunk_for_budget(devices.cuda_peak_mib(run_one_task), ecfg["chunk_memory_mib"])
