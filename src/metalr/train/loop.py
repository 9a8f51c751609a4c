"""Meta-training of one run: sample task batches, adapt, step Adam on the query loss."""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import psutil
import torch
from tqdm import tqdm

from metalr import allocator, io, precision, seeding, stages
from metalr import config as config_mod
from metalr.algorithms import get_algorithm
from metalr.algorithms.meta_batch import accumulate_meta_gradient, uses_vmap
from metalr.config import Run
from metalr.data.arrays import MANIFEST, SplitArrays, load_split, npy_bytes
from metalr.data.episodes import episode_tensors, sample_episode
from metalr.evaluate.validation import Validation
from metalr.models import get_backbone
from metalr.steprules import make_rule
from metalr.train import checkpoint
from metalr.train.outer_step import make_outer_step
from metalr.train.rates import RATES_FILE, RateLog
from metalr.train.schedule import outer_lr

MODEL_FILE = "model.pt"
LOG_FILE = "train_log.json"
LAMBDAS_FILE = "lambdas.npy"


class DivergenceError(RuntimeError):
    """The meta-training loss became NaN or infinite."""


class LogsTooLarge(RuntimeError):
    """``train.iterations`` asks for per-iteration logs larger than the memory available."""


def log_bytes(iterations: int, task_batch: int, inner_steps: int, outer_blocks: int) -> int:
    """Memory of the per-iteration logs training keeps: λ (float32, batch x steps), loss and accuracy
    (float64) and the outer step sizes (float64 per block)."""
    return iterations * (4 * task_batch * inner_steps + 8 + 8 + 8 * outer_blocks)


def check_log_memory(run_id: str, iterations: int, needed: int, available: int) -> None:
    """Refuse logs that cannot fit: a checkpoint or the final λ file serialises a copy, so twice their size."""
    print(f"train {run_id}: {iterations} iterations; their logs take {needed / 2**20:.1f} MiB of memory "
          f"(twice that while a checkpoint is written; {available / 2**20:.0f} MiB available)", file=sys.stderr)
    if 2 * needed > available:
        raise LogsTooLarge(f"train.iterations = {iterations}: the training logs of run {run_id} would take "
                           f"{2 * needed / 2**30:.1f} GiB of memory with a checkpoint's copy, and "
                           f"{available / 2**30:.1f} GiB are available; lower train.iterations")


def output_files(out_dir: Path) -> list[Path]:
    return [out_dir / MODEL_FILE, out_dir / LOG_FILE, out_dir / LAMBDAS_FILE, out_dir / RATES_FILE]


def init_model(cfg: Mapping[str, Any], run: Run, image_shape: list[int], device: str = "cpu") -> dict[str, torch.Tensor]:
    """The initial parameters of ``model.name``, drawn on the CPU (the same numbers whatever the device), then moved."""
    channels, height, _ = image_shape
    backbone = get_backbone(cfg["model"]["name"])
    params = backbone.init(seeding.torch_generator(run.seed, seeding.STREAM_INIT), channels, height, run.ways,
                           filters=cfg["model"]["filters"])
    return {k: v.to(device) for k, v in params.items()}


def lock_file(checkpoint_path: Path) -> Path:
    """The lock a training run holds for its whole life, beside its checkpoint (under work/)."""
    return checkpoint_path.with_suffix(".lock")


@dataclass
class Fitted:
    """The outcome of meta-training: the selected iterate and everything logged on the way."""

    params: dict[str, torch.Tensor]  # the model's parameters at the selected iteration (on the device)
    meta: dict[str, torch.Tensor]  # the rule's learned tensors at the selected iteration (empty if none)
    selected_iteration: int  # 1-based: the last iteration, or the best on validation (train.select)
    log: dict  # train_log.json
    lambdas: np.ndarray  # [iterations, task_batch, inner_steps] float32: every step size of training
    rate_log: RateLog
    image_shape: list[int]  # [C, H, W] of the training images
    algorithm: Any  # the algorithm and step-size rule it was trained with
    rule: Any


def train(cfg: Mapping[str, Any], run: Run, data_dir: Path, out_dir: Path, checkpoint_path: Path,
          progress: bool = True, device: str = "cpu", val_tasks: Path | None = None, tuned: Path | None = None) -> dict:
    """Meta-train ``run`` (``fit``), then write model.pt, train_log.json (with the model's and the dataset
    manifest's sha256), lambdas.npy and rates.json into ``out_dir``, each atomically, and remove the
    checkpoint. Returns the training log.

    ``val_tasks``: the cell's validation task list (needed when ``train.validate_every`` > 0); ``tuned``:
    the tuning result (chosen.json) whose settings a tuned run trains with (``metalr.tune``, its hash
    checked). Raises io.Busy when another process trains the same run, LogsTooLarge when the logs cannot
    fit in memory, DivergenceError on a NaN/inf loss."""
    from metalr.tune import config_for_run

    # The run's identity is the resolved config's values (what the workflow planned); a tuned run's
    # settings come from its tuning result, recorded beside them and part of what a checkpoint must match.
    identity = stages.settings("train", cfg, stages.run_job(run))
    cfg, tuning = config_for_run(cfg, run, tuned)
    split = load_split(data_dir, "train")  # verified against its manifest before anything is written
    validation = None
    if val_tasks is not None:
        validation = Validation.load(val_tasks, data_dir, run.dataset, run.ways, run.shots,
                                     config_mod.evaluation_inner_steps(cfg, run.rule), device,
                                     precision.forward_context(cfg["compute"], device))
    with io.exclusive_lock(lock_file(checkpoint_path), f"training of run {run.run_id}"):
        for path in (*output_files(out_dir), checkpoint_path):
            io.remove_stale_temporaries(path)
        fitted = fit(cfg, run, split, checkpoint_path, progress, device, validation,
                     checkpoint_identity={**identity, "tuning": tuning})
        model = {
            "run": run.as_dict(cfg["experiment"]),
            "config": identity,
            "config_digest": stages.digest(identity),
            "image_shape": fitted.image_shape,
            "params": {k: v.detach().cpu() for k, v in fitted.params.items()},
            "meta": {k: v.detach().cpu() for k, v in fitted.meta.items()},
            "selection": fitted.log["selection"],
            "tuning": tuning,
            "environment": seeding.environment(device),
        }
        model_bytes = checkpoint.torch_bytes(model)
        log = fitted.log
        # The hashes the later stages check: evaluation checks the model's, the report both.
        log["model_sha256"] = io.sha256_bytes(model_bytes)
        log["dataset_manifest_sha256"] = io.sha256_file(data_dir / MANIFEST)
        out_dir.mkdir(parents=True, exist_ok=True)
        io.write_bytes(out_dir / LAMBDAS_FILE, npy_bytes(fitted.lambdas))
        io.write_json(out_dir / LOG_FILE, log)
        fitted.rate_log.write(out_dir / RATES_FILE, run.as_dict(cfg["experiment"]), cfg["train"]["inner_steps"])
        io.write_bytes(out_dir / MODEL_FILE, model_bytes)
        checkpoint_path.unlink(missing_ok=True)
        return log


def fit(cfg: Mapping[str, Any], run: Run, split: SplitArrays, checkpoint_path: Path, progress: bool = True,
        device: str = "cpu", validation: Validation | None = None,
        checkpoint_identity: Mapping[str, Any] | None = None) -> Fitted:
    """Meta-train ``run`` on ``split`` (its train split; resuming from ``checkpoint_path``), scoring
    ``validation``'s tasks every ``train.validate_every`` iterations and at the last one;
    ``train.select: best_val`` keeps the iterate with the best mean validation accuracy (the earliest of
    equals), ``last`` the final one. A checkpoint resumes only for the same ``checkpoint_identity``
    (default: the run's settings under ``cfg``, metalr.stages).

    Raises DivergenceError when the loss becomes NaN or infinite, ConfigError when validation is asked
    for without a validation task list, CheckpointMismatch for a checkpoint of another config,
    LogsTooLarge when the logs cannot fit in memory.
    """
    tcfg = cfg["train"]
    validate_every = tcfg["validate_every"]
    if validate_every and validation is None:
        raise config_mod.ConfigError(f"train.validate_every is {validate_every} but run {run.run_id} was given no "
                                     "validation task list")
    seeding.configure_torch(tcfg["threads"], cfg["deterministic"])
    precision.configure(cfg["compute"])
    allocator.configure(cfg["compute"]["cpu_allocator"])
    forward_context = precision.forward_context(cfg["compute"], device)
    run_config = (stages.settings("train", cfg, stages.run_job(run)) if checkpoint_identity is None
                  else checkpoint_identity)
    by_class = split.indices_by_class()
    algorithm = get_algorithm(run.algorithm, cfg["algorithms"], get_backbone(cfg["model"]["name"]))
    rule = make_rule(run.rule, cfg["rules"])
    vmap = uses_vmap(cfg["compute"]["batching"], device, algorithm)

    params = init_model(cfg, run, list(split.images.shape[1:]), device)
    meta = rule.init_meta({k: params[k] for k in algorithm.adapted_keys(params)}, tcfg["inner_steps"])
    trainable = {**{f"model.{k}": v for k, v in params.items()}, **{f"rule.{k}": v for k, v in meta.items()}}
    for tensor in trainable.values():
        tensor.requires_grad_(True)
    outer_step = make_outer_step(tcfg, trainable)
    optimizer = torch.optim.Adam(outer_step.param_groups(), lr=tcfg["outer_lr"])
    rate_log = RateLog()
    # The task sampler is the loop's only source of randomness (init draws from its own generator,
    # nothing draws from torch's global RNG, validation draws nothing), so its state is the RNG state a
    # checkpoint must hold.
    rng = seeding.numpy_rng(run.seed, seeding.STREAM_TRAIN_TASKS)

    iterations, batch, steps = tcfg["iterations"], tcfg["task_batch"], tcfg["inner_steps"]
    check_log_memory(run.run_id, iterations, log_bytes(iterations, batch, steps, len(outer_step.blocks)),
                     psutil.virtual_memory().available)
    lambdas = np.zeros((iterations, batch, steps), dtype=np.float32)
    losses = np.zeros(iterations, dtype=np.float64)
    accuracies = np.zeros(iterations, dtype=np.float64)
    outer_lrs = np.zeros((iterations, len(outer_step.blocks)), dtype=np.float64)
    curve: dict[str, list] = {"iterations": [], "accuracy": []}
    best: dict[str, Any] = {"iteration": 0, "accuracy": -1.0, "trainable": None}
    start = 0
    resumed = checkpoint.load(checkpoint_path, run_config, device)
    if resumed is not None:
        with torch.no_grad():
            for key, value in resumed["trainable"].items():
                trainable[key].copy_(value)
        optimizer.load_state_dict(resumed["optimizer"])
        rng.bit_generator.state = resumed["rng"]
        start = resumed["iteration"]
        lambdas[:start], losses[:start], accuracies[:start], outer_lrs[:start] = (
            resumed["lambdas"], resumed["losses"], resumed["accuracies"], resumed["outer_lrs"])
        outer_step.load_state_dict(resumed["outer_step"])
        rate_log.load_state_dict(resumed["rate_log"])
        curve, best = resumed["validation"], resumed["best"]
        print(f"{run.run_id}: resuming from {checkpoint_path} at iteration {start} of {iterations}",
              file=sys.stderr)

    bar = tqdm(range(start, iterations), initial=start, total=iterations, desc=f"train {run.run_id}",
               disable=not progress, mininterval=0.5 if sys.stderr.isatty() else 10.0, file=sys.stderr)
    started = time.perf_counter()
    for it in bar:
        if it == start + 1:
            per_iteration = time.perf_counter() - started
            print(f"train {run.run_id}: the first iteration took {per_iteration:.2f} s; the remaining "
                  f"{iterations - it} should take about {per_iteration * (iterations - it) / 60:.1f} min",
                  file=sys.stderr)
        episodes = [sample_episode(rng, by_class, run.ways, run.shots, tcfg["queries"]) for _ in range(batch)]
        optimizer.zero_grad(set_to_none=True)
        tasks = [episode_tensors(split, episode, device=device) for episode in episodes]
        meta_batch = accumulate_meta_gradient(algorithm, params, meta, rule, tasks, steps, vmap, forward_context)
        batch_loss, accuracies[it], lambdas[it] = meta_batch.query_loss, meta_batch.query_accuracy, meta_batch.rates
        if not math.isfinite(batch_loss):
            finite = losses[:it][np.isfinite(losses[:it])]
            last = f"{finite[-1]:.6g}" if finite.size else "none"
            raise DivergenceError(f"run {run.run_id} diverged at iteration {it + 1}: loss {batch_loss}; "
                                  f"last finite loss {last}. No results were written.")
        outer_step.before_step(optimizer, outer_lr(tcfg, it))
        optimizer.step()
        outer_step.after_step()
        outer_lrs[it] = outer_step.step_sizes(optimizer)
        losses[it] = batch_loss
        if (it + 1) % tcfg["log_every"] == 0:
            rate_log.record(it + 1, algorithm, params, meta, rule,
                            [episode_tensors(split, e, device=device) for e in episodes], steps)
            window = slice(it + 1 - tcfg["log_every"], it + 1)
            bar.set_postfix(loss=f"{losses[window].mean():.3f}", acc=f"{accuracies[window].mean():.3f}")
        if validate_every and ((it + 1) % validate_every == 0 or it + 1 == iterations):
            score = float(validation.accuracies(algorithm, params, meta, rule).mean())
            curve["iterations"].append(it + 1)
            curve["accuracy"].append(round(score, 6))
            if tcfg["select"] == "best_val" and score > best["accuracy"]:
                best = {"iteration": it + 1, "accuracy": score,
                        "trainable": {k: v.detach().clone() for k, v in trainable.items()}}
        if (it + 1) % tcfg["checkpoint_every"] == 0 and it + 1 < iterations:
            checkpoint.save(checkpoint_path, {
                "config": run_config, "iteration": it + 1, "optimizer": optimizer.state_dict(),
                "trainable": {k: v.detach().clone() for k, v in trainable.items()}, "rng": rng.bit_generator.state,
                "lambdas": lambdas[: it + 1], "losses": losses[: it + 1], "accuracies": accuracies[: it + 1],
                "outer_lrs": outer_lrs[: it + 1], "outer_step": outer_step.state_dict(),
                "rate_log": rate_log.state_dict(), "validation": curve, "best": best,
            })
    bar.close()

    selected = {k: v.detach() for k, v in trainable.items()}
    selected_iteration = iterations
    if tcfg["select"] == "best_val":
        selected, selected_iteration = best["trainable"], best["iteration"]
    log = training_log(run.as_dict(cfg["experiment"]), losses, accuracies, tcfg)
    if outer_step.blocks:
        log["outer_step_size"] = {"blocks": outer_step.blocks,
                                  "values": outer_lrs[[i - 1 for i in log["iterations"]]].tolist()}
    if validate_every:
        log["validation"] = {**curve, "task_list": dict(validation.record())}
    log["selection"] = {"rule": tcfg["select"], "iteration": selected_iteration}
    return Fitted(params={k: selected[f"model.{k}"] for k in params}, meta={k: selected[f"rule.{k}"] for k in meta},
                  selected_iteration=selected_iteration, log=log, lambdas=lambdas, rate_log=rate_log,
                  image_shape=list(split.images.shape[1:]), algorithm=algorithm, rule=rule)


def training_log(run: dict, losses: np.ndarray, accuracies: np.ndarray, tcfg: Mapping[str, Any]) -> dict:
    """Means over each window of ``log_every`` iterations, labelled by the window's last iteration."""
    every = tcfg["log_every"]
    ends = list(range(every, len(losses) + 1, every)) or [len(losses)]
    mean = lambda a, end: round(float(a[max(0, end - every):end].mean()), 6)  # noqa: E731
    return {
        "run": run,
        "iterations": ends,
        "query_loss": [mean(losses, e) for e in ends],
        "query_accuracy": [mean(accuracies, e) for e in ends],
        "inner_steps": tcfg["inner_steps"],
        "task_batch": tcfg["task_batch"],
        "log_every": every,
    }
