"""Meta-validation: scoring a model on the frozen list of validation tasks (meta-val classes).

The validation task list is drawn from the ``val`` split by the same mechanism as the test list
(``metalr tasks --split val``; ``evaluate.val_tasks`` tasks, ``evaluate.queries`` queries per class,
seed ``evaluate.task_seed``). Training scores it every ``train.validate_every`` iterations (the curve
goes to train_log.json; ``train.select: best_val`` keeps the best iterate) and each tuning trial is
scored on it. Nothing here reads the test split.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Mapping

import numpy as np

from metalr import io
from metalr.algorithms.base import Algorithm
from metalr.data.arrays import MANIFEST, SplitArrays, load_split, split_hashes
from metalr.data.episodes import Episode, episode_tensors, load_task_list
from metalr.evaluate.chunked import score_tasks
from metalr.steprules.base import Params, StepRule

VALIDATION_SPLIT = "val"


class ValidationError(ValueError):
    """A validation task list that is not for the run, or not drawn from the meta-validation split."""


@dataclass(frozen=True)
class Validation:
    """The validation tasks of one cell, ready to score any (params, meta) of a run on them."""

    split: SplitArrays
    task_list: dict[str, Any]
    path: Path
    steps: int
    device: str
    forward_context: Callable[[], ContextManager] = contextlib.nullcontext

    @classmethod
    def load(cls, tasks_path: Path, data_dir: Path, dataset: str, ways: int, shots: int, steps: int, device: str,
             forward_context: Callable[[], ContextManager] = contextlib.nullcontext) -> "Validation":
        """Raises ValidationError when the list is not a meta-val list of (dataset, ways, shots), and
        io.HashMismatch when the split's arrays are not the ones it was drawn from (its ``split_sha256``)."""
        task_list = load_task_list(tasks_path)
        found = (task_list["dataset"], task_list["split"], task_list["ways"], task_list["shots"])
        if found != (dataset, VALIDATION_SPLIT, ways, shots):
            raise ValidationError(f"{tasks_path} holds {found[0]} {found[1]}-split {found[2]}-way {found[3]}-shot "
                                  f"tasks, not {VALIDATION_SPLIT}-split tasks of {dataset} {ways}-way {shots}-shot; "
                                  "rerun its tasks stage")
        actual = split_hashes(data_dir, VALIDATION_SPLIT)
        if task_list.get("split_sha256") != actual:
            raise io.HashMismatch(f"{tasks_path} was drawn from other {VALIDATION_SPLIT} arrays than those of "
                                  f"{Path(data_dir) / MANIFEST} (its split_sha256); rerun its tasks stage")
        return cls(load_split(data_dir, VALIDATION_SPLIT), task_list, Path(tasks_path), steps, device, forward_context)

    def accuracies(self, algorithm: Algorithm, params: Params, meta: Params, rule: StepRule) -> np.ndarray:
        """Query accuracy of every validation task: [tasks] float64 in [0, 1] (adapted first order,
        ``steps`` inner steps, one task at a time: validation runs inside training, on its device)."""
        tasks = (episode_tensors(self.split, Episode.from_dict(e), device=self.device)
                 for e in self.task_list["episodes"])
        scored = score_tasks(algorithm, params, meta, rule, tasks, self.steps, chunk=1,
                             forward_context=self.forward_context)
        return np.array([score.accuracy for score in scored], dtype=np.float64)

    def record(self) -> Mapping[str, Any]:
        """What a result scored on these tasks records of them."""
        return {"path": str(self.path), "sha256": self.task_list["sha256"], "tasks": len(self.task_list["episodes"]),
                "inner_steps": self.steps}
