"""Step-size trajectories: the inner rates per adapted tensor and inner step, across meta-training.

Every ``train.log_every`` iterations the training loop calls ``RateLog.record`` with the current
initialisation, rule tensors and the iteration's task batch. The batch is adapted again, without a
graph (``training=False``: first order, nothing accumulates into ``.grad``), through a rule wrapper
that stores each step's rates; the recorded value per tensor and step is the mean over the
tasks (for element-wise rates, Meta-SGD's, first the mean over the tensor's elements). The extra
pass reads the parameters and draws no random numbers, so training itself is unchanged.
It is written to ``rates.json`` beside the model: rates[i][k][s] at iterations[i], tensor keys[k],
inner step s.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from metalr import io
from metalr.algorithms.base import Algorithm, Task
from metalr.steprules.base import Params, Rates, StepRule, SupportState, per_tensor

RATES_FILE = "rates.json"


class RecordingRule:
    """A rule that behaves exactly as ``rule`` and keeps, per step, the mean rate of each tensor."""

    def __init__(self, rule: StepRule) -> None:
        self.rule = rule
        self.name, self.learned = rule.name, rule.learned
        self.steps: list[dict[str, float]] = []

    def init_meta(self, params: Params, inner_steps: int) -> Params:
        return self.rule.init_meta(params, inner_steps)

    def rates(self, meta: Params, params: Params, grads: Params, step: int, support: SupportState,
              state: Params) -> Rates:
        out = self.rule.rates(meta, params, grads, step, support, state)
        self.steps.append({k: float(v.detach().mean()) for k, v in per_tensor(out.rates, grads).items()})
        return out


def task_rates(algorithm: Algorithm, params: Params, meta: Params, rule: StepRule, tasks: Sequence[Task],
               steps: int) -> tuple[list[str], list[list[float]]]:
    """Adapted keys and, per key, the per-step rate averaged over ``tasks``."""
    per_task = []
    with torch.no_grad():
        for task in tasks:
            recorder = RecordingRule(rule)
            algorithm.task_result(params, meta, recorder, task, steps, training=False)
            per_task.append(recorder.steps)
    keys = list(per_task[0][0])
    return keys, [[sum(t[s][k] for t in per_task) / len(per_task) for s in range(steps)] for k in keys]


class RateLog:
    """The trajectory of one run; its state travels in checkpoints so a resumed run writes the same file."""

    def __init__(self) -> None:
        self.iterations: list[int] = []
        self.keys: list[str] = []
        self.rates: list[list[list[float]]] = []

    def record(self, iteration: int, algorithm: Algorithm, params: Params, meta: Params, rule: StepRule,
               tasks: Sequence[Task], steps: int) -> None:
        self.keys, rates = task_rates(algorithm, params, meta, rule, tasks, steps)
        self.iterations.append(iteration)
        self.rates.append(rates)

    def state_dict(self) -> dict[str, Any]:
        return {"iterations": list(self.iterations), "keys": list(self.keys), "rates": list(self.rates)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iterations, self.keys, self.rates = list(state["iterations"]), list(state["keys"]), list(state["rates"])

    def write(self, path: Path, run: dict[str, Any], inner_steps: int) -> None:
        io.write_json(path, {"run": run, "inner_steps": inner_steps, **self.state_dict()})
