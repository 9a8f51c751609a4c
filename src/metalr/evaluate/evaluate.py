"""Scoring a trained model on the frozen list of test tasks."""
from __future__ import annotations

import functools
import math
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch.nn.functional as F
from tqdm import tqdm

from metalr import config as config_mod
from metalr import allocator, io, precision, seeding, stages
from metalr.algorithms import get_algorithm
from metalr.algorithms.base import Task
from metalr.config import Run
from metalr.data.arrays import MANIFEST, load_split
from metalr.data.episodes import Episode, episode_tensors, load_task_list
from metalr.evaluate.chunked import TaskScore, resolve_chunk, score_tasks
from metalr.evaluate.stats import mean_ci95
from metalr.models import get_backbone
from metalr.steprules import make_rule
from metalr.train.checkpoint import read_torch
from metalr.train.loop import LOG_FILE

DIGITS = 6  # per-task accuracies are recorded, and their statistics computed, at this precision


class NonFiniteEvaluation(RuntimeError):
    """A step size, loss or logit became NaN or infinite while a test task was adapted or scored."""


def retrain_hint(run: Run) -> str:
    return f"rerun the train stage for run {run.run_id} (metalr train --run {run.run_id})"


def check_model_hash(model_path: Path, run: Run) -> str:
    """The model's sha256, after checking it against the one its training recorded in train_log.json beside
    it (io.HashMismatch naming the file and the train stage when they differ). Checked before the file is
    parsed, so a swapped model is never even loaded."""
    log_path = model_path.parent / LOG_FILE
    if not log_path.is_file():
        raise FileNotFoundError(f"{log_path} is missing: it records the sha256 of {model_path} that evaluation "
                                f"checks; {retrain_hint(run)}")
    recorded = io.read_json(log_path, retrain_hint(run)).get("model_sha256")
    actual = io.sha256_file(model_path)
    if recorded != actual:
        raise io.HashMismatch(f"{model_path} has sha256 {actual[:16]}..., its training recorded "
                              f"{str(recorded)[:16]}... in {log_path}: the model changed after training; "
                              f"{retrain_hint(run)}")
    return actual


def check_task_list_source(task_list: Mapping[str, Any], tasks_path: Path, data_dir: Path) -> None:
    """The task list must have been drawn from this build of the dataset (the manifest's sha256 it recorded)."""
    actual = io.sha256_file(data_dir / MANIFEST)
    if task_list.get("dataset_manifest_sha256") != actual:
        raise io.HashMismatch(f"task list {tasks_path} was drawn from another build of {data_dir} (its "
                              f"{MANIFEST} has sha256 {actual[:16]}..., the task list recorded "
                              f"{str(task_list.get('dataset_manifest_sha256'))[:16]}...); rerun the tasks stage "
                              f"(metalr tasks --dataset {task_list.get('dataset')} --ways {task_list.get('ways')} "
                              f"--shots {task_list.get('shots')})")


def finite(score: TaskScore) -> bool:
    """Whether a task's step sizes and query loss (and so its logits) are all finite."""
    return bool(np.isfinite(score.rates).all()) and math.isfinite(score.loss)


def first_non_finite_step(score_one: Callable[[int], TaskScore], steps: int) -> int:
    """The first number of inner steps after which a task's step sizes or query loss are not finite
    (``score_one(k)`` adapts the task with k steps); evaluation is deterministic, so rerunning finds it."""
    return next((k for k in range(1, steps + 1) if not finite(score_one(k))), steps)


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
    distinct tasks, the model's hash and the tuning result's (and, cross-domain, the test classes left out
    as seen in training).

    Refuses, before scoring: a model whose sha256 differs from its training log's (io.HashMismatch) or that
    holds anything but tensors and plain containers (io.UnsafeFile), a task list drawn from another build of
    the dataset (io.HashMismatch), a cross-domain list that keeps the training set's classes (ConfigError),
    a tuning result whose hash or cell differs (metalr.tune.TuningError).
    Raises NonFiniteEvaluation, writing nothing, when a step size or the query loss becomes NaN or inf."""
    from metalr.tune import config_for_run

    # The identities are the resolved config's values (what the workflow planned); a tuned run's settings
    # come from its tuning result, which must be the one the model was trained with.
    stage, job = stages.evaluation_job(run, test_dataset or run.dataset)
    identity = stages.settings(stage, cfg, job)
    expected = stages.settings("train", cfg, stages.run_job(run))
    cfg, tuning = config_for_run(cfg, run, tuned)
    ecfg = cfg["evaluate"]
    test_dataset = test_dataset or run.dataset
    io.remove_stale_temporaries(out_path)
    seeding.configure_torch(ecfg["threads"], cfg["deterministic"])
    precision.configure(cfg["compute"])
    allocator.configure(cfg["compute"]["cpu_allocator"])
    model_sha256 = check_model_hash(Path(model_path), run)
    model = read_torch(model_path, retrain_hint(run), device)
    if not isinstance(model, dict) or not {"config", "params", "meta", "image_shape"} <= set(model):
        raise io.UnreadableFile(f"{model_path} is not a metalr model; {retrain_hint(run)}")
    if model["config"] != expected:
        raise config_mod.ConfigError(f"model {model_path} was trained with a different config than run "
                                     f"{run.run_id} asks for; retrain it")
    if (model.get("tuning") or {}).get("sha256") != (tuning or {}).get("sha256"):
        trained = (model.get("tuning") or {}).get("sha256", "no tuning result")
        raise io.HashMismatch(f"model {model_path} was trained with tuning result {str(trained)[:16]}, not with "
                              f"{tuned} ({(tuning or {}).get('sha256', 'none')[:16]}); rerun its train stage")
    task_list = load_task_list(tasks_path)
    if (task_list["dataset"], task_list["ways"], task_list["shots"]) != (test_dataset, run.ways, run.shots):
        raise config_mod.ConfigError(
            f"task list {tasks_path} is for {task_list['dataset']} {task_list['ways']}-way {task_list['shots']}-shot, "
            f"not for run {run.run_id} tested on {test_dataset}")
    check_task_list_source(task_list, Path(tasks_path), Path(data_dir))
    unseen_by = task_list.get("unseen_by")
    if test_dataset != run.dataset and (unseen_by or {}).get("dataset") != run.dataset:
        raise config_mod.ConfigError(
            f"task list {tasks_path} does not leave out the test classes that {run.dataset} meta-trained on, so "
            f"run {run.run_id} could be scored on classes it has seen; draw the cross-domain list with "
            f"`metalr tasks --dataset {test_dataset} --ways {run.ways} --shots {run.shots} --unseen-by {run.dataset}`")
    split = load_split(data_dir, task_list["split"])
    resize = resizer(split.images.shape[1:], model["image_shape"], test_dataset, run.dataset)
    algorithm = get_algorithm(run.algorithm, cfg["algorithms"], get_backbone(cfg["model"]["name"]))
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
    for index, task_score in enumerate(score(tasks, chunk=chunk)):
        if not finite(task_score):
            task = load(episodes[index])
            step = first_non_finite_step(lambda k: next(score_tasks(
                algorithm, params, meta, rule, [task], steps=k, chunk=1,
                forward_context=precision.forward_context(cfg["compute"], device))), steps)
            raise NonFiniteEvaluation(
                f"evaluation of run {run.run_id} on {test_dataset} stopped at task {index + 1} of {len(episodes)} "
                f"({tasks_path}), inner step {step} of {steps}: the step size or the query loss (its logits) became "
                f"NaN or infinite. No metrics were written; check the rule's settings (rules.{run.rule}) and the "
                f"model ({model_path})")
        accuracies.append(round(task_score.accuracy, DIGITS))
        class_accuracies.append(task_score.class_accuracy)
        rates.append(task_score.rates)
    rates = np.stack(rates)
    metrics = {
        "run": run.as_dict(cfg["experiment"]),
        "evaluation": {"dataset": test_dataset, "ways": run.ways, "shots": run.shots, "split": task_list["split"],
                       "image_shape": list(split.images.shape[1:]), "resized_to": model["image_shape"],
                       **({"unseen_by": {key: unseen_by[key] for key in (
                           "dataset", "matched_by", "classes_with_wordnet_id", "excluded", "classes_total",
                           "classes_remaining")}} if unseen_by else {})},
        "accuracy": mean_ci95(accuracies),
        "per_task_accuracy": accuracies,
        # class-level scores (metalr.report.method_stats): each task's classes (indices into the test split,
        # label order, as in the task list) and the accuracy on each one's queries
        "per_task_classes": [list(episode["classes"]) for episode in episodes],
        "per_task_class_accuracy": [[round(float(a), DIGITS) for a in task] for task in class_accuracies],
        "inner_steps": steps,
        "task_list": {"path": str(tasks_path), "sha256": task_list["sha256"],
                      "distinct_tasks": task_list["distinct_tasks"]},
        "lambda": {
            "mean_per_step": [round(float(v), 6) for v in rates.mean(axis=0)],
            "min_per_step": [round(float(v), 6) for v in rates.min(axis=0)],
            "max_per_step": [round(float(v), 6) for v in rates.max(axis=0)],
        },
        "model": {"path": str(model_path), "sha256": model_sha256},
        "tuning": tuning,
        "config_digest": stages.digest(identity),
        "config": identity,
    }
    io.write_json(out_path, metrics)
    return metrics
