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

The backbone is a case field (``--backbone``; every registered one, ``metalr.models``); the reference loop
implements Conv-4 only, so other backbones are timed for metalr alone.

Utilisation. The first untimed iteration of each case runs under ``torch.utils.flop_counter.FlopCounterMode``,
which counts the FLOPs of matrix multiplications and convolutions, forward and backward (2 per
multiply-add; BatchNorm, pooling and element-wise operations are not counted): the case's FLOPs per
meta-iteration. Divided by the median time, that gives the achieved FLOP/s, and divided by the device's
measured dense matmul throughput (the best of several [n x n] @ [n x n] float32 products, n = 2048 on a
CPU and 8192 on CUDA, in a fresh process like the cases, with the same threads), the model FLOPs
utilisation (MFU). Everything runs in IEEE float32: on CUDA TF32 is off for matmuls and convolutions
(``compute.tf32: false``, the pipeline's default), for the cases and for the matmul alike.
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
from torch.utils.flop_counter import FlopCounterMode

from metalr import allocator, io, precision, seeding
from metalr.algorithms import get_algorithm
from metalr.algorithms.base import Task
from metalr.models import get_backbone
from metalr.steprules import RULES, make_rule
from metalr.steprules.mlplr import personalised_rate

SHAPES = {"cifar_fs": (3, 32), "mini_imagenet": (3, 84)}
# Every rule runs with its SPEC's default settings. The reference loop implements these; other cases are
# timed for metalr alone.
REFERENCE_ALGORITHMS, REFERENCE_RULES, REFERENCE_BACKBONE = ("maml", "fomaml", "anil"), ("fixed", "mlplr"), "conv4"
MATMUL_SIZE = {"cpu": 2048, "cuda": 8192}  # large enough to reach each device's dense float32 throughput
IEEE_FLOAT32 = {"tf32": False}  # compute.tf32: false


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
    backbone: str = "conv4"


def make_params(case: Case, dtype: torch.dtype, device: str) -> dict[str, torch.Tensor]:
    channels, size = SHAPES[case.shape]
    params = get_backbone(case.backbone).init(torch.Generator().manual_seed(0), channels, size, case.ways,
                                              case.filters, dtype)
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


REFERENCE_BLOCKS = 4


def reference_forward(params: dict, x: torch.Tensor) -> torch.Tensor:
    """Conv-4 as learn2learn's ConvBlock computes it: conv, affine BatchNorm on batch statistics, ReLU,
    max-pool (exact outside vmap; metalr's own forward is arranged differently, see models/conv4.py)."""
    for block in range(REFERENCE_BLOCKS):
        x = F.conv2d(x, params[f"conv{block}.weight"], params[f"conv{block}.bias"], padding=1)
        x = F.batch_norm(x, None, None, params[f"bn{block}.weight"], params[f"bn{block}.bias"], training=True)
        x = F.max_pool2d(F.relu(x), 2)
    return F.linear(x.flatten(1), params["head.weight"], params["head.bias"])


def reference_query_loss(case: Case, params: dict, task: Task, steps: int, create_graph: bool) -> torch.Tensor:
    """Clone the parameters, adapt with autograd.grad, score the query set."""
    head_only = case.algorithm == "anil"
    second_order = create_graph and case.algorithm != "fomaml"
    rate = reference_rate(case.rule)
    keys = [k for k in params if k.startswith("head.")] if head_only else list(params)
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
    return (case.algorithm in REFERENCE_ALGORITHMS and case.rule in REFERENCE_RULES
            and case.backbone == REFERENCE_BACKBONE)


def metalr_query_loss(case: Case, params: dict, task: Task, steps: int, create_graph: bool) -> torch.Tensor:
    """The scalar whose gradient is the meta-gradient (the query loss, or Reptile's and iMAML's surrogate).
    A rule's learned tensors start at their initial values and receive their gradient too."""
    rule = make_rule(case.rule, {})  # the SPEC's defaults
    algorithm = get_algorithm(case.algorithm, {}, get_backbone(case.backbone))
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


def count_flops(work: Callable[[], Any]) -> int:
    """FLOPs of the matrix multiplications and convolutions (forward and backward) that ``work`` runs,
    as ``torch.utils.flop_counter.FlopCounterMode`` counts them (2 per multiply-add)."""
    counter = FlopCounterMode(display=False)
    with counter:
        work()
    return counter.get_total_flops()


def time_case(case: Case, implementation: str, device: str, repeats: int, warmup: int,
              eval_tasks: int, cpu_allocator: str) -> dict[str, Any]:
    """Run in a fresh process: meta-iteration times, FLOPs, evaluation time and peak memory.

    The first of the ``warmup`` untimed iterations counts the FLOPs per meta-iteration.
    Raises ValueError if ``warmup`` < 1."""
    if warmup < 1:
        raise ValueError(f"the FLOPs are counted in the first warm-up iteration; warmup must be >= 1, got {warmup}")
    allocator.configure(cpu_allocator)
    precision.configure(IEEE_FLOAT32)
    params = make_params(case, torch.float32, device)
    batches = [make_tasks(case, case.task_batch, torch.float32, device, seed=s) for s in range(warmup + repeats)]
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def iteration(tasks: list[Task]) -> None:
        meta_step(case, implementation, params, tasks)
        for p in params.values():
            p.grad = None

    flops = count_flops(lambda: iteration(batches[0]))
    times = []
    for index, tasks in enumerate(batches[1:], start=1):
        sync(device)
        start = time.perf_counter()
        iteration(tasks)
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
        "flops_per_iteration": flops,
        "flop_per_s": flops / median,
        "threads": torch.get_num_threads(),
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


def matmul_throughput(device: str, repeats: int = 10, size: int | None = None) -> dict[str, Any]:
    """The device's dense float32 matmul throughput in this process (its threads), TF32 off: the best of
    ``repeats`` timed [n x n] @ [n x n] products, 2 n^3 FLOP each (n = ``size``, default ``MATMUL_SIZE[device]``),
    after two untimed ones. Returns the FLOP/s (``flop_per_s``) with the conditions it was measured in."""
    precision.configure(IEEE_FLOAT32)
    size = size or MATMUL_SIZE[device]
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.rand(size, size, generator=gen).to(device) for _ in range(2))
    out = torch.empty(size, size, device=device)
    times = []
    for index in range(2 + repeats):
        sync(device)
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        sync(device)
        if index >= 2:
            times.append(time.perf_counter() - start)
    flop = 2 * size ** 3
    return {"size": size, "dtype": "float32", "tf32": False, "threads": torch.get_num_threads(), "repeats": repeats,
            "flop_per_s": flop / min(times), "flop_per_s_median": flop / statistics.median(times)}


def add_utilisation(timing: dict[str, Any], peak: dict[str, Any]) -> None:
    """Model FLOPs utilisation of one timed case: its achieved FLOP/s over the measured matmul peak."""
    timing["utilisation"] = timing["flop_per_s"] / peak["flop_per_s"]


def run(cases: list[Case], device: str, repeats: int, warmup: int, eval_tasks: int, out_path,
        cpu_allocator: str, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Time every case (a fresh process per case and implementation), write the JSON report to ``out_path``
    (atomically) and return it; ``progress`` receives the table's lines as they come.

    Raises RuntimeError if metalr's float64 meta-gradient differs from the reference loop's (nothing is
    written) or a subprocess fails."""
    warmup = max(warmup, 1)  # the first warm-up iteration counts the FLOPs
    peak = in_subprocess(matmul_throughput, device)
    progress(f"dense float32 matmul peak: {peak['flop_per_s'] / 1e9:.1f} GFLOP/s ({peak['size']}x{peak['size']}, "
             f"{peak['threads']} threads, TF32 off)")
    progress(HEADER)
    progress(HEADER_NOTE)
    rows = []
    for case in cases:
        if has_reference(case):
            error = check_gradients(case)
            if error > 1e-9:
                raise RuntimeError(f"metalr's meta-gradient differs from the reference for {case} (relative error "
                                   f"{error:.3g} in float64); refusing to time a wrong implementation")
            variants = timed_variants(device, cpu_allocator)
            row = {"case": asdict(case), "float64_relative_grad_difference": error}
        else:
            variants = {"metalr": ("metalr", cpu_allocator)}
            row = {"case": asdict(case)}
        for column, (implementation, setting) in variants.items():
            row[column] = in_subprocess(time_case, case, implementation, device, repeats, warmup, eval_tasks, setting)
            add_utilisation(row[column], peak)
        for column in variants.keys() - {"metalr"}:
            suffix = "" if column == "reference" else "_same_allocator"
            row[f"speedup_metalr_vs_reference{suffix}"] = (row[column]["iteration_s"]["median"]
                                                          / row["metalr"]["iteration_s"]["median"])
            row[f"eval_speedup_metalr_vs_reference{suffix}"] = (row[column]["eval"]["seconds"]
                                                               / row["metalr"]["eval"]["seconds"])
        rows.append(row)
        progress(format_row(row))
    report = {"device": environment(device), "matmul_peak": peak,
              "settings": {"repeats": repeats, "warmup": warmup, "eval_tasks": eval_tasks,
                           "cpu_allocator": cpu_allocator, "tf32": False},
              "results": rows}
    io.write_json(out_path, report)
    return report


def environment(device: str) -> dict[str, Any]:
    env = seeding.environment(device)
    env.update(processor=platform.processor() or platform.machine(), threads=torch.get_num_threads(),
               argv=sys.argv[1:])
    return env


HEADER = (f"{'shape':<14}{'shot':>4} {'backbone':<9}{'algorithm':<10}{'rule':<14}{'metalr s/it':>12}{'ref s/it':>10}"
          f"{'speedup':>8}{'ref* s/it':>10}{'speedup*':>9}{'eval600 s':>10}{'ref eval':>9}{'MiB':>7}"
          f"{'GFLOP/it':>9}{'MFU':>6}")
HEADER_NOTE = ("ref*: the reference loop with metalr's CPU allocator setting (its code alone against metalr's); "
               "GFLOP/it and MFU: metalr's FLOPs per meta-iteration and their share of the matmul peak")


def format_row(row: dict[str, Any]) -> str:
    """One line of the printed table; ``--`` where the case has no reference loop (or no ref* variant)."""
    case, ours = row["case"], row["metalr"]
    reference, same = row.get("reference"), row.get(SAME_ALLOCATOR)

    def cell(value: float | None, width: int, digits: int) -> str:
        return f"{'--':>{width}}" if value is None else f"{value:>{width}.{digits}f}"

    return (f"{case['shape']:<14}{case['shots']:>4} {case['backbone']:<9}{case['algorithm']:<10}{case['rule']:<14}"
            + cell(ours["iteration_s"]["median"], 12, 3)
            + cell(reference and reference["iteration_s"]["median"], 10, 3)
            + cell(row.get("speedup_metalr_vs_reference"), 8, 2)
            + cell(same and same["iteration_s"]["median"], 10, 3)
            + cell(row.get("speedup_metalr_vs_reference_same_allocator"), 9, 2)
            + cell(ours["eval"]["seconds_per_600"], 10, 1)
            + cell(reference and reference["eval"]["seconds_per_600"], 9, 1)
            + cell(ours["peak_memory_mib"], 7, 0)
            + cell(ours["flops_per_iteration"] / 1e9, 9, 1)
            + cell(ours["utilisation"], 6, 2))
