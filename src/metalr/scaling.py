"""Scaling study: time per meta-iteration and peak memory against inner steps, shots and task batch.

For each algorithm, one axis is swept at a time, the others held at ``analysis.scaling.base``. Each
point runs the training path itself (``accumulate_meta_gradient`` with the per-task loop, the fixed
rule) on the backbone ``analysis.scaling.backbone``, on random images of the configured shape, with
``train.threads`` threads, as a training job.
Time: the median of ``repeats`` meta-iterations after ``warmup``. Memory: the peak of the tensor
memory a meta-iteration allocates beyond what was alive before it, from the allocation events
PyTorch's profiler records in one extra iteration (on CUDA: max allocated above the start). It
counts tensors only (not the allocator's caching or the process), is deterministic, and needs no
fresh process. The JSON's ``summary`` gives, per algorithm, the ratio of the largest to the smallest
inner-step count's time and memory: second-order MAML's memory grows with the inner steps, iMAML's
should stay flat (its implicit gradient does not store the inner path).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, replace
from itertools import accumulate
from typing import Any, Callable, Mapping

import torch
from torch.profiler import ProfilerActivity, profile

from metalr import allocator, bench, devices, io
from metalr.algorithms import get_algorithm
from metalr.algorithms.meta_batch import accumulate_meta_gradient
from metalr.models import get_backbone
from metalr.steprules import make_rule

AXES = ("inner_steps", "shots", "task_batch")
RULE = "fixed"


def cases(scfg: Mapping[str, Any]) -> list[tuple[str, bench.Case]]:
    """(swept axis, case) for every algorithm and every value of every axis."""
    base = bench.Case(scfg["shape"], scfg["base"]["shots"], "", RULE, ways=scfg["ways"], queries=scfg["queries"],
                      task_batch=scfg["base"]["task_batch"], inner_steps=scfg["base"]["inner_steps"],
                      filters=scfg["filters"], backbone=scfg["backbone"])
    return [(axis, replace(base, algorithm=algorithm, **{axis: value}))
            for algorithm in scfg["algorithms"] for axis in AXES for value in scfg[axis]]


def peak_tensor_mib(work: Callable[[], Any], device: str) -> float:
    """Peak memory of the tensors ``work`` allocates (beyond those alive before it), in MiB."""
    if device == "cuda":
        return devices.cuda_peak_mib(work)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        work()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    return max(accumulate(nbytes for _, nbytes in events), default=0) / 2**20


def measure(case: bench.Case, algorithm_settings: Mapping[str, Any], rule_settings: Mapping[str, Any],
            device: str, repeats: int, warmup: int) -> dict[str, Any]:
    """Median seconds per meta-iteration and the peak tensor memory of one meta-iteration."""
    algorithm = get_algorithm(case.algorithm, algorithm_settings, get_backbone(case.backbone))
    rule = make_rule(RULE, rule_settings)
    params = bench.make_params(case, torch.float32, device)
    batches = [bench.make_tasks(case, case.task_batch, torch.float32, device, seed=s) for s in range(warmup + repeats)]

    def iteration(tasks) -> None:
        accumulate_meta_gradient(algorithm, params, {}, rule, tasks, case.inner_steps, vmap=False)
        for p in params.values():
            p.grad = None

    times = []
    for index, tasks in enumerate(batches):
        bench.sync(device)
        start = time.perf_counter()
        iteration(tasks)
        bench.sync(device)
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return {"iteration_s": statistics.median(times), "iteration_s_all": times,
            "peak_memory_mib": peak_tensor_mib(lambda: iteration(batches[0]), device),
            "peak_memory_kind": "cuda_max_allocated" if device == "cuda" else "cpu_tensor_allocations"}


def summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per algorithm: largest / smallest inner-step count, in time and in memory."""
    out = {}
    for algorithm in dict.fromkeys(r["case"]["algorithm"] for r in rows):
        sweep = sorted((r for r in rows if r["axis"] == "inner_steps" and r["case"]["algorithm"] == algorithm),
                       key=lambda r: r["case"]["inner_steps"])
        low, high = sweep[0], sweep[-1]
        out[algorithm] = {
            "inner_steps_low": low["case"]["inner_steps"], "inner_steps_high": high["case"]["inner_steps"],
            "time_ratio": high["iteration_s"] / low["iteration_s"],
            "memory_ratio": high["peak_memory_mib"] / max(low["peak_memory_mib"], 1e-9),
            "memory_mib_low": low["peak_memory_mib"], "memory_mib_high": high["peak_memory_mib"],
        }
    return out


def run(cfg: Mapping[str, Any], device: str, out_path, progress: Callable[[str], None] = print) -> dict[str, Any]:
    scfg = cfg["analysis"]["scaling"]
    torch.set_num_threads(cfg["train"]["threads"])
    allocator.configure(cfg["compute"]["cpu_allocator"])
    rows = []
    for axis, case in cases(scfg):
        timing = measure(case, cfg["algorithms"], cfg["rules"], device, scfg["repeats"], scfg["warmup"])
        rows.append({"axis": axis, "case": asdict(case), **timing})
        progress(f"{case.algorithm:<7} {axis:<12}={getattr(case, axis):>3}  {timing['iteration_s']:8.3f} s/it  "
                 f"{timing['peak_memory_mib']:8.1f} MiB")
    report = {"device": {**bench.environment(device), "threads": cfg["train"]["threads"]}, "settings": dict(scfg),
              "results": rows, "summary": summary(rows)}
    io.write_json(out_path, report)
    return report
