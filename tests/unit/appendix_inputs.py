"""The generated files the appendix's analysis sections read, built small, for compiling the appendix in tests."""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

from metalr import config as config_mod
from metalr import io, scaling
from metalr.analysis import fidelity
from metalr.report import scaling as scaling_report
from metalr.report.analyses import build_analyses
from tests.unit.helpers import CONV4, tiny_params, tiny_task


PEAK_FLOP_PER_S = 2e11


def timing(median: float, gflop: float = 12.5) -> dict:
    return {"iteration_s": {"median": median, "min": median / 2, "max": median * 2, "repeats": 2},
            "tasks_per_s": 4 / median, "peak_memory_mib": 512.4, "peak_memory_kind": "cpu_max_rss",
            "eval": {"seconds_per_600": 1.0}, "flops_per_iteration": gflop * 1e9, "flop_per_s": gflop * 1e9 / median,
            "utilisation": gflop * 1e9 / median / PEAK_FLOP_PER_S, "threads": 2}


BENCH = {"device": {"device": "cpu"},
         "settings": {"repeats": 2, "warmup": 1, "eval_tasks": 2, "cpu_allocator": "retain"},
         "matmul_peak": {"size": 2048, "dtype": "float32", "tf32": False, "threads": 2, "repeats": 10,
                         "flop_per_s": PEAK_FLOP_PER_S, "flop_per_s_median": PEAK_FLOP_PER_S * 0.9}, "results": [
    {"case": {"shape": "cifar_fs", "shots": 1, "algorithm": "maml", "rule": "fixed", "ways": 5, "queries": 5,
              "task_batch": 4, "inner_steps": 5, "filters": 16, "backbone": "conv4"},
     "metalr": timing(0.25), "reference": timing(0.5), "reference_same_allocator": timing(0.4),
     "speedup_metalr_vs_reference": 2.0, "speedup_metalr_vs_reference_same_allocator": 1.6},
    {"case": {"shape": "cifar_fs", "shots": 1, "algorithm": "reptile", "rule": "hypergradient", "ways": 5,
              "queries": 5, "task_batch": 4, "inner_steps": 5, "filters": 16, "backbone": "conv4"},
     "metalr": timing(0.125, gflop=4.0)}]}


def analysis_config(experiment: str = "unit") -> dict:
    cfg = config_mod.load([config_mod.DEFAULT_CONFIG])
    cfg["experiment"] = experiment
    cfg["analysis"]["fidelity"].update(inner_steps=[1, 2], cg_steps=[1, 3])
    cfg["analysis"]["scaling"].update(filters=2, queries=1, algorithms=["maml", "imaml"], inner_steps=[1, 4],
                                      shots=[1], task_batch=[1, 2], repeats=1, warmup=0,
                                      base={"inner_steps": 1, "shots": 1, "task_batch": 1})
    return cfg


def write_analysis_inputs(folder: Path, cfg: dict) -> tuple[Path, Path]:
    """fidelity.json (measured on a tiny model) and cost.json (BENCH) in ``folder``."""
    result = fidelity.measure(CONV4, tiny_params(), [tiny_task()], 0.3, 1.0, [1, 2], [1, 3])
    io.write_json(folder / "fidelity.json", {"experiment": cfg["experiment"],
                                             "settings": fidelity.fidelity_settings(cfg), **result})
    io.write_json(folder / "cost.json", BENCH)
    return folder / "fidelity.json", folder / "cost.json"


def generated_with_analyses(generated: Path, folder: Path, experiment: str) -> Path:
    """A copy of a report's ``generated`` folder plus the analyses' and the scaling study's outputs."""
    out = folder / "generated"
    shutil.copytree(generated, out)
    cfg = analysis_config(experiment)
    fidelity_json, cost_json = write_analysis_inputs(folder, cfg)
    build_analyses(cfg, fidelity_json, cost_json, [], out)
    scaling.run(copy.deepcopy(cfg), "cpu", folder / "scaling.json", progress=lambda line: None)
    scaling_report.write(folder / "scaling.json", out)
    return out
