"""What the report checks before it believes a metrics file: the hash chain back to the data.

For every evaluation it recomputes the mean and interval from the per-task accuracies, and checks the
recorded hashes against the files: the model (against the evaluation's record and its training log's),
the task list (against the evaluation's record and its own hash), and the dataset manifests (against
the task list's and the training log's records; a cross-domain list also records the training dataset's).
Every mismatch names the file and the stage to rerun. Paths recorded in the files are relative to the
project folder the stages ran in, the working directory of the report.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from metalr import io
from metalr.data.arrays import MANIFEST
from metalr.data.episodes import load_task_list
from metalr.evaluate.stats import mean_ci95

TOLERANCE = 1e-9  # statistics are recomputed from the same rounded per-task values: equal up to float noise
RECOMPUTED = ("mean", "ci95", "std", "n_tasks")


class ResultMismatch(ValueError):
    """A recorded result differs from what its own per-task values give; the message names the file and stage."""


def _stage(name: str, run_id: str) -> str:
    return f"rerun the {name} stage for run {run_id} (metalr {name} --run {run_id})"


def check_statistics(metrics: Mapping[str, Any], path: Path) -> None:
    """The recorded accuracy statistics must be what the recorded per-task accuracies give."""
    run_id = metrics["run"]["run_id"]
    recomputed = mean_ci95(metrics["per_task_accuracy"])
    for key in RECOMPUTED:
        recorded = metrics["accuracy"][key]
        if not math.isclose(float(recorded), float(recomputed[key]), rel_tol=0, abs_tol=TOLERANCE):
            raise ResultMismatch(f"{path}: accuracy.{key} is {recorded}, but its {len(metrics['per_task_accuracy'])} "
                                 f"per-task accuracies give {recomputed[key]}: the file was edited; "
                                 f"{_stage('evaluate', run_id)}")


def _sha(path: Path, what: str, remedy: str) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"{path} ({what}) is missing; {remedy}")
    return io.sha256_file(path)


def check_manifest(data_root: Path, dataset: str, recorded: str, recorder: Path, remedy: str) -> None:
    manifest = data_root / dataset / MANIFEST
    actual = _sha(manifest, f"the manifest of dataset {dataset}",
                  f"rerun the data stage (metalr data --dataset {dataset})")
    if actual != recorded:
        raise io.HashMismatch(f"{manifest} has sha256 {actual[:16]}..., {recorder} recorded {str(recorded)[:16]}...: "
                              f"dataset {dataset} was rebuilt (or changed) since; {remedy}")


def check_evaluation(path: Path, data_root: Path) -> None:
    """Check one metrics file: its statistics, its model, its task list and the datasets behind them."""
    metrics = io.read_json(path, "rerun the evaluate stage that writes it")
    run_id = metrics["run"]["run_id"]
    check_statistics(metrics, path)

    model = Path(metrics["model"]["path"])
    actual = _sha(model, f"the model of run {run_id}", _stage("train", run_id))
    if actual != metrics["model"]["sha256"]:
        raise io.HashMismatch(f"{model} has sha256 {actual[:16]}..., the evaluation {path} recorded "
                              f"{metrics['model']['sha256'][:16]}...: the model changed after it was evaluated; "
                              f"{_stage('evaluate', run_id)}")
    log_path = model.parent / "train_log.json"
    log = io.read_json(log_path, _stage("train", run_id))
    if log.get("model_sha256") != actual:
        raise io.HashMismatch(f"{model} has sha256 {actual[:16]}..., its training log {log_path} recorded "
                              f"{str(log.get('model_sha256'))[:16]}...: the model is not the one training wrote; "
                              f"{_stage('train', run_id)}, then evaluate it again")
    check_manifest(data_root, metrics["run"]["dataset"], log.get("dataset_manifest_sha256"), log_path,
                   f"{_stage('train', run_id)}, then evaluate it again")

    tuning = metrics.get("tuning")
    if tuning:  # a tuned run: the chosen.json it trained and was evaluated with is still the one on disk
        chosen = io.read_json(tuning["path"], "rerun its tune stage (metalr tune)")
        body = {k: v for k, v in chosen.items() if k != "sha256"} if isinstance(chosen, dict) else None
        if body is None or io.sha256_json(body) != tuning["sha256"]:
            raise io.HashMismatch(f"tuning result {tuning['path']} is not the one the evaluation {path} recorded "
                                  f"(sha256 {str(tuning['sha256'])[:16]}...): it was tuned again after the run; "
                                  f"{_stage('train', run_id)}, then evaluate it again")

    tasks_path = Path(metrics["task_list"]["path"])
    _sha(tasks_path, f"the task list of the evaluation {path}", "rerun the tasks stage (metalr tasks), then evaluate")
    task_list = load_task_list(tasks_path)
    if task_list["sha256"] != metrics["task_list"]["sha256"]:
        raise io.HashMismatch(f"task list {tasks_path} has sha256 {task_list['sha256'][:16]}..., the evaluation "
                              f"{path} recorded {metrics['task_list']['sha256'][:16]}...: the tasks were drawn again "
                              f"after it; {_stage('evaluate', run_id)}")
    tasks_again = f"rerun the tasks stage that writes {tasks_path} (metalr tasks), then {_stage('evaluate', run_id)}"
    check_manifest(data_root, task_list["dataset"], task_list["dataset_manifest_sha256"], tasks_path, tasks_again)
    unseen_by = task_list.get("unseen_by")
    if unseen_by:
        check_manifest(data_root, unseen_by["dataset"], unseen_by["manifest_sha256"], tasks_path, tasks_again)


def check_inputs(metrics_paths: list[Path], data_root: Path) -> None:
    """``check_evaluation`` for every metrics file: the report stage runs this before it reads any number.
    Raises ResultMismatch, io.HashMismatch, io.UnreadableFile or FileNotFoundError, each naming the file
    and the stage to rerun."""
    for path in metrics_paths:
        try:
            check_evaluation(Path(path), Path(data_root))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ResultMismatch(f"{path} (or a file it names) lacks a field a metalr evaluation writes ({exc!r}); "
                                 f"rerun the evaluate stage that writes it") from exc
