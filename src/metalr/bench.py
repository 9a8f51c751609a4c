"""`metalr bench`: metalr's meta-training and evaluation speed beside a plain reference loop.

The reference is the clone/adapt pattern learn2learn's MAML uses, written here with
``torch.autograd.grad(create_graph=True)`` per task (learn2learn 0.2.0 does not build on Python
3.11; this loop gives bit-identical meta-gradients at the same speed). Both see identical weights
and task batches (random images of the dataset's shape). Before any timing, the two meta-gradients
are compared in float64 (second-order MAML in float32 differs by percents after 5 steps in every
implementation). Each (shape, shots, algorithm, rule, implementation) is timed in a fresh
subprocess, so its peak memory (CPU RSS, or CUDA max allocated) is its own.

metalr runs with its CPU allocator setting (``compute.cpu_allocator``, metalr.allocator); the
reference runs as a plain PyTorch user would, with glibc's defaults. On a CPU, when the two differ,
the reference is timed a second time with metalr's setting, so the ratio splits into what the
allocator gives and what the code gives.
"""
from __future__ import annotations

import multiprocessing
import platform
import statistics
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from metalr import allocator, io, seeding
from metalr.algorithms import get_algorithm
from metalr.algorithms.base import Task
from metalr.models import conv4
from metalr.steprules import RULES, make_rule
from metalr.steprules.mlplr import personalised_rate

SHAPES = {"cifar_fs": (3, 32), "mini_imagenet": (3, 84)}
# Every rule runs with its SPEC's default settings. The reference loop implements these; other cases are
# timed for metalr alone.
REFERENCE_ALGORITHMS, REFERENCE_RULES = ("maml", "fomaml", "anil"), ("fixed", "mlplr")


@dataclass(frozen=True)
class Case:
    shape: str
    shots: int
    algorithm: str
    rule: str
    ways: int = 5
    queries: int = 15
    task_batch: int = 4
    inner_steps: int = 5
    eval_steps: int = 10
    filters: int = 64


def make_params(case: Case, dtype: torch.dtype, device: str) -> dict[str, torch.Tensor]:
    channels, size = SHAPES[case.shape]
    params = conv4.init(torch.Generator().manual_seed(0), channels, size, case.ways, case.filters, dtype)
    return {k: v.to(device).requires_grad_(True) for k, v in params.items()}


def make_tasks(case: Case, count: int, dtype: torch.dtype, device: str, seed: int = 1) -> list[Task]:
    channels, size = SHAPES[case.shape]
    gen = torch.Generator().manual_seed(seed)

    def images(n: int) -> torch.Tensor:
        return torch.rand(n, channels, size, size, generator=gen, dtype=dtype).to(device)

    ys = torch.arange(case.ways).repeat_interleave(case.shots).to(device)
    yq = torch.arange(case.ways).repeat_interleave(case.queries).to(device)
    return [Task(images(case.ways * case.shots), ys, images(case.ways * case.queries), yq) for _ in range(count)]


def reference_rate(rule: str) -> Callable[[torch.Tensor], torch.Tensor | float]:
    settings = RULES[rule].defaults()
    if rule == "fixed":
        return lambda loss: settings["lr"]
    return lambda loss: personalised_rate(loss.detach(), settings["lr_max"], settings["lr_min"])


def reference_forward(params: dict, x: torch.Tensor) -> torch.Tensor:
    """Conv-4 as learn2learn's ConvBlock computes it: conv, affine BatchNorm on batch statistics, ReLU,
    max-pool (exact outside vmap; metalr's own forward is arranged differently, see models/conv4.py)."""
    for block in range(conv4.BLOCKS):
        x = F.conv2d(x, params[f"conv{block}.weight"], params[f"conv{block}.bias"], padding=1)
        x = F.batch_norm(x, None, None, params[f"bn{block}.weight"], params[f"bn{block}.bias"], training=True)
        x = F.max_pool2d(F.relu(x), 2)
    return conv4.head(params, x.flatten(1))


def reference_query_loss(case: Case, params: dict, task: Task, steps: int, create_graph: bool) -> torch.Tensor:
    """Clone the parameters, adapt with autograd.grad, score the query set."""
    head_only = case.algorithm == "anil"
    second_order = create_graph and case.algorithm != "fomaml"
    rate = reference_rate(case.rule)
    keys = conv4.head_keys(params) if head_only else list(params)
    fast = dict(params)
    for _ in range(steps):
        loss = F.cross_entropy(reference_forward(fast, task.xs), task.ys)
        grads = torch.autograd.grad(loss, [fast[k] for k in keys], create_graph=second_order)
        if not second_order:
            grads = [g.detach() for g in grads]
        step = rate(loss)
        fast = {**fast, **{k: fast[k] - step * g for k, g in zip(keys, grads)}}
    return F.cross_entropy(reference_forward(fast, task.xq), task.yq)


def has_reference(case: Case) -> bool:
    return case.algorithm in REFERENCE_ALGORITHMS and case.rule in REFERENCE_RULES


def metalr_query_loss(case: Case, params: dict, task: Task, steps: int, create_graph: bool) -> torch.Tensor:
    """The scalar whose gradient is the meta-gradient (the query loss, or Reptile's and iMAML's surrogate).
    A rule's learned tensors start at their initial values and receive their gradient too."""
    rule = make_rule(case.rule, {})  # the SPEC's defaults
    algorithm = get_algorithm(case.algorithm, {})
    adapted = {k: params[k].detach() for k in algorithm.adapted_keys(params)}
    meta = {k: v.requires_grad_(create_graph) for k, v in rule.init_meta(adapted, case.inner_steps).items()}
    return algorithm.task_result(params, meta, rule, task, steps, training=create_graph).meta_objective


IMPLEMENTATIONS = {"metalr": metalr_query_loss, "reference": reference_query_loss}


def metalr_evaluate(case: Case, params: dict, task: Task) -> None:
    """As metalr.evaluate does it: no outer graph is kept."""
    with torch.no_grad():
        metalr_query_loss(case, params, task, case.eval_steps, False)


def reference_evaluate(case: Case, params: dict, task: Task) -> None:
    reference_query_loss(case, params, task, case.eval_steps, False)


EVALUATE = {"metalr": metalr_evaluate, "reference": reference_evaluate}


def meta_step(case: Case, implementation: str, params: dict, tasks: list[Task]) -> None:
    query_loss = IMPLEMENTATIONS[implementation]
    for task in tasks:
        (query_loss(case, params, task, case.inner_steps, True) / len(tasks)).backward()


def check_gradients(case: Case) -> float:
    """Relative difference between metalr's and the reference's meta-gradients (all parameters as
    one vector: per tensor, the conv biases' exact-zero gradients would divide rounding noise)."""
    grads = {}
    tasks = make_tasks(case, case.task_batch, torch.float64, "cpu")
    for name in IMPLEMENTATIONS:
        params = make_params(case, torch.float64, "cpu")
        meta_step(case, name, params, tasks)
        grads[name] = {k: v.grad for k, v in params.items()}
    ours = torch.cat([g.flatten() for g in grads["metalr"].values()])
    ref = torch.cat([g.flatten() for g in grads["reference"].values()])
    return float((ours - ref).norm() / ref.norm())


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_case(case: Case, implementation: str, device: str, repeats: int, warmup: int,
              eval_tasks: int, cpu_allocator: str) -> dict[str, Any]:
    """Run in a fresh process: meta-iteration times, evaluation time and peak memory."""
    allocator.configure(cpu_allocator)
    params = make_params(case, torch.float32, device)
    batches = [make_tasks(case, case.task_batch, torch.float32, device, seed=s) for s in range(warmup + repeats)]
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for index, tasks in enumerate(batches):
        sync(device)
        start = time.perf_counter()
        meta_step(case, implementation, params, tasks)
        for p in params.values():
            p.grad = None
        sync(device)
        if index >= warmup:
            times.append(time.perf_counter() - start)
    eval_params = {k: v.detach().requires_grad_(implementation == "reference") for k, v in params.items()}
    eval_start = time.perf_counter()
    for task in make_tasks(case, eval_tasks, torch.float32, device, seed=10_000):
        EVALUATE[implementation](case, eval_params, task)
    sync(device)
    eval_seconds = time.perf_counter() - eval_start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else peak_rss_mib()
    median = statistics.median(times)
    return {
        "iteration_s": {"median": median, "min": min(times), "max": max(times), "repeats": len(times)},
        "iterations_per_s": 1.0 / median,
        "tasks_per_s": case.task_batch / median,
        "peak_memory_mib": peak,
        "peak_memory_kind": "cuda_max_allocated" if device == "cuda" else "cpu_max_rss",
        "eval": {"tasks_timed": eval_tasks, "seconds": eval_seconds, "seconds_per_600": eval_seconds * 600 / eval_tasks,
                 "extrapolated": eval_tasks != 600},
        "cpu_allocator": cpu_allocator,
    }


def peak_rss_mib() -> float:
    """This process's peak resident memory (Linux ``VmHWM``), in MiB.

    Not ``getrusage``: its ``ru_maxrss`` keeps the high-water mark of the process that forked this
    one, so every spawned case reported the parent's peak (the float64 gradient check) instead of its own.
    """
    try:
        with open("/proc/self/status") as status:
            lines = status.read().splitlines()
    except FileNotFoundError:
        raise RuntimeError("metalr bench measures peak CPU memory from /proc/self/status (Linux); "
                           "this platform has none") from None
    (kib,) = [int(line.split()[1]) for line in lines if line.startswith("VmHWM:")]
    return kib / 1024


def _worker(queue, func, args) -> None:
    try:
        queue.put(("ok", func(*args)))
    except BaseException:  # reported to the parent, which would otherwise wait forever
        queue.put(("error", traceback.format_exc()))


def in_subprocess(func: Callable[..., dict[str, Any]], *args) -> dict[str, Any]:
    """``func(*args)`` in a fresh process (its peak memory is its own); ``func`` must be importable.
    An exception in the child is raised here with the child's traceback."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_worker, args=(queue, func, args))
    process.start()
    status, result = queue.get()
    process.join()
    if status != "ok":
        raise RuntimeError(f"{func.__name__}{args} failed in its subprocess:\n{result}")
    return result


def timed_variants(device: str, cpu_allocator: str) -> dict[str, tuple[str, str]]:
    """Column name -> (implementation, CPU allocator setting) for a case with a reference loop."""
    variants = {"metalr": ("metalr", cpu_allocator), "reference": ("reference", "system")}
    if device == "cpu" and cpu_allocator != "system":
        variants[SAME_ALLOCATOR] = ("reference", cpu_allocator)
    return variants


SAME_ALLOCATOR = "reference_same_allocator"


def run(cases: list[Case], device: str, repeats: int, warmup: int, eval_tasks: int, out_path,
        cpu_allocator: str, progress: Callable[[str], None] = print) -> dict[str, Any]:
    rows = []
    for case in cases:
        if not has_reference(case):
            rows.append({"case": asdict(case), "metalr": in_subprocess(time_case, case, "metalr", device, repeats,
                                                                       warmup, eval_tasks, cpu_allocator)})
            progress(format_metalr_row(rows[-1]))
            continue
        error = check_gradients(case)
        if error > 1e-9:
            raise RuntimeError(f"metalr's meta-gradient differs from the reference for {case} "
                               f"(relative error {error:.3g} in float64); refusing to time a wrong implementation")
        timings = {column: in_subprocess(time_case, case, implementation, device, repeats, warmup, eval_tasks, setting)
                   for column, (implementation, setting) in timed_variants(device, cpu_allocator).items()}
        row = {"case": asdict(case), "float64_relative_grad_difference": error, **timings}
        for column in timings.keys() - {"metalr"}:
            suffix = "" if column == "reference" else "_same_allocator"
            row[f"speedup_metalr_vs_reference{suffix}"] = (timings[column]["iteration_s"]["median"]
                                                          / timings["metalr"]["iteration_s"]["median"])
            row[f"eval_speedup_metalr_vs_reference{suffix}"] = (timings[column]["eval"]["seconds"]
                                                               / timings["metalr"]["eval"]["seconds"])
        rows.append(row)
        progress(format_row(rows[-1]))
    report = {"device": environment(device), "settings": {"repeats": repeats, "warmup": warmup,
                                                           "eval_tasks": eval_tasks, "cpu_allocator": cpu_allocator},
              "results": rows}
    io.write_json(out_path, report)
    return report


def environment(device: str) -> dict[str, Any]:
    env = seeding.environment(device)
    env.update(processor=platform.processor() or platform.machine(), threads=torch.get_num_threads(),
               argv=sys.argv[1:])
    return env


HEADER = (f"{'shape':<14}{'shot':>4} {'algorithm':<8}{'rule':<7}{'metalr s/it':>12}{'ref s/it':>10}"
          f"{'speedup':>8}{'ref* s/it':>10}{'speedup*':>9}{'eval600 s':>10}{'ref eval':>9}{'MiB':>7}")
HEADER_NOTE = "ref*: the reference loop with metalr's CPU allocator setting (its code alone against metalr's)"


def format_row(row: dict[str, Any]) -> str:
    case = row["case"]
    same = row.get(SAME_ALLOCATOR)
    same_columns = (f"{same['iteration_s']['median']:>10.3f}{row['speedup_metalr_vs_reference_same_allocator']:>9.2f}"
                    if same else f"{'--':>10}{'--':>9}")
    return (f"{case['shape']:<14}{case['shots']:>4} {case['algorithm']:<8}{case['rule']:<7}"
            f"{row['metalr']['iteration_s']['median']:>12.3f}{row['reference']['iteration_s']['median']:>10.3f}"
            f"{row['speedup_metalr_vs_reference']:>8.2f}{same_columns}{row['metalr']['eval']['seconds_per_600']:>10.1f}"
            f"{row['reference']['eval']['seconds_per_600']:>9.1f}{row['metalr']['peak_memory_mib']:>7.0f}")


def format_metalr_row(row: dict[str, Any]) -> str:
    """A case without a reference loop: metalr's columns only."""
    case = row["case"]
    return (f"{case['shape']:<14}{case['shots']:>4} {case['algorithm']:<8}{case['rule']:<7}"
            f"{row['metalr']['iteration_s']['median']:>12.3f}{'--':>10}{'--':>8}{'--':>10}{'--':>9}"
            f"{row['metalr']['eval']['seconds_per_600']:>10.1f}{'--':>9}{row['metalr']['peak_memory_mib']:>7.0f}")
