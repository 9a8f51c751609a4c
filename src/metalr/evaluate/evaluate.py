"""Scoring a trained model on the frozen list of test tasks."""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from metalr import config as config_mod
from metalr import allocator, io, precision, seeding
from metalr.algorithms import get_algorithm
from metalr.algorithms.base import Task
from metalr.config import Run
from metalr.data.arrays import load_split
from metalr.data.episodes import Episode, episode_tensors, load_task_list
from metalr.evaluate.chunked import resolve_chunk, score_tasks
from metalr.evaluate.stats import mean_ci95
from metalr.steprules import make_rule


def resizer(image_shape: Sequence[int], train_shape: Sequence[int], test_dataset: str,
            train_dataset: str) -> Callable[[Task], Task]:
    """Images of another dataset brought to the training resolution (antialiased bilinear), which the
    model's classifier layer is sized for; a different channel count cannot be bridged and is refused."""
    (channels, height, width), (train_channels, train_height, train_width) = image_shape, train_shape
    if channels != train_channels:
        raise config_mod.ConfigError(
            f"{test_dataset} images have {channels} channel(s), the model trained on {train_dataset} expects "
            f"{train_channels}; choose cross_domain test datasets with the training dataset's channels")
    if (height, width) == (train_height, train_width):
        return lambda task: task

    def resize(task: Task) -> Task:
        scale = lambda x: F.interpolate(x, size=(train_height, train_width), mode="bilinear",  # noqa: E731
                                        align_corners=False, antialias=True)
        return Task(scale(task.xs), task.ys, scale(task.xq), task.yq)

    return resize


def evaluate(cfg: Mapping[str, Any], run: Run, model_path: Path, tasks_path: Path, data_dir: Path,
             out_path: Path, progress: bool = True, device: str = "cpu", test_dataset: str | None = None,
             tuned: Path | None = None) -> dict:
    """Score ``run``'s model on the task list; ``test_dataset`` (default: the training dataset) names the
    dataset the tasks come from, another one for a cross-domain evaluation; ``tuned``: the tuning result
    (chosen.json) whose settings the run was trained with, when the experiment tunes (``metalr.tune``).

    Writes (and returns) the metrics: the mean accuracy with its Student-t 95% interval over the tasks, the
    accuracy of every task and of every class within it, the step sizes, the task list's hash and number of
    distinct tasks, the model's hash and the tuning result's."""
    from metalr.tune import config_for_run

    cfg, tuning = config_for_run(cfg, run, tuned)
    ecfg = cfg["evaluate"]
    test_dataset = test_dataset or run.dataset
    io.remove_stale_temporaries(out_path)
    seeding.configure_torch(ecfg["threads"], cfg["deterministic"])
    precision.configure(cfg["compute"])
    allocator.configure(cfg["compute"]["cpu_allocator"])
    model = torch.load(model_path, weights_only=False, map_location=device)
    expected = config_mod.train_slice(cfg, run)
    if model["config"] != expected:
        raise config_mod.ConfigError(f"model {model_path} was trained with a different config than run "
                                     f"{run.run_id} asks for; retrain it")
    task_list = load_task_list(tasks_path)
    if (task_list["dataset"], task_list["ways"], task_list["shots"]) != (test_dataset, run.ways, run.shots):
        raise config_mod.ConfigError(
            f"task list {tasks_path} is for {task_list['dataset']} {task_list['ways']}-way {task_list['shots']}-shot, "
            f"not for run {run.run_id} tested on {test_dataset}")
    split = load_split(data_dir, task_list["split"])
    resize = resizer(split.images.shape[1:], model["image_shape"], test_dataset, run.dataset)
    algorithm = get_algorithm(run.algorithm, cfg["algorithms"])
    rule = make_rule(run.rule, cfg["rules"])
    params, meta = model["params"], model["meta"]

    accuracies, class_accuracies, rates = [], [], []
    episodes = task_list["episodes"]
    load = lambda episode: resize(episode_tensors(split, Episode.from_dict(episode), device=device))  # noqa: E731
    steps = config_mod.evaluation_inner_steps(cfg, run.rule)
    score = functools.partial(score_tasks, algorithm, params, meta, rule, steps=steps,
                              forward_context=precision.forward_context(cfg["compute"], device))
    chunk = resolve_chunk(ecfg, device, lambda: list(score([load(episodes[0])], chunk=1)))
    tasks = (load(episode) for episode in tqdm(episodes, desc=f"evaluate {run.run_id}", disable=not progress,
                                               mininterval=0.5 if sys.stderr.isatty() else 10.0, file=sys.stderr))
    for task_score in score(tasks, chunk=chunk):
        accuracies.append(task_score.accuracy)
        class_accuracies.append(task_score.class_accuracy)
        rates.append(task_score.rates)
    rates = np.stack(rates)
    metrics = {
        "run": run.as_dict(cfg["experiment"]),
        "evaluation": {"dataset": test_dataset, "ways": run.ways, "shots": run.shots, "split": task_list["split"],
                       "image_shape": list(split.images.shape[1:]), "resized_to": model["image_shape"]},
        "accuracy": mean_ci95(accuracies),
        "per_task_accuracy": [round(a, 6) for a in accuracies],
        # class-level scores (metalr.report.method_stats): each task's classes (indices into the test split,
        # label order, as in the task list) and the accuracy on each one's queries
        "per_task_classes": [list(episode["classes"]) for episode in episodes],
        "per_task_class_accuracy": [[round(float(a), 6) for a in task] for task in class_accuracies],
        "inner_steps": steps,
        "task_list": {"path": str(tasks_path), "sha256": task_list["sha256"],
                      "distinct_tasks": task_list["distinct_tasks"]},
        "lambda": {
            "mean_per_step": [round(float(v), 6) for v in rates.mean(axis=0)],
            "min_per_step": [round(float(v), 6) for v in rates.min(axis=0)],
            "max_per_step": [round(float(v), 6) for v in rates.max(axis=0)],
        },
        "model": {"path": str(model_path), "sha256": io.sha256_file(model_path)},
        "tuning": tuning,
        "config_digest": config_mod.digest(config_mod.evaluate_slice(cfg, run)),
        "config": config_mod.evaluate_slice(cfg, run),
    }
    io.write_json(out_path, metrics)
    return metrics
