"""Cost of every algorithm × rule: the benchmark's meta-iteration time, FLOPs and utilisation, and peak memory
(``analysis.cost``, on the backbone ``analysis.cost.backbone``).

The cases are ``analysis.cost``'s shapes × shots × algorithms × rules, less the pairs config
validation refuses (a rule with learned rates and an algorithm whose meta-gradient does not reach
them). Each is timed by ``metalr.bench`` (a fresh process per case; against the reference loop where
it exists); the table itself is drawn by ``metalr.report.analyses``.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Mapping

from metalr import bench, devices
from metalr.algorithms import ALGORITHMS
from metalr.steprules import RULES


def valid_pair(algorithm: str, rule: str) -> bool:
    return ALGORITHMS[algorithm].flag("trains_rule_meta") or not RULES[rule].flag("learned")


def cases(cfg: Mapping[str, Any]) -> list[bench.Case]:
    c = cfg["analysis"]["cost"]
    return [bench.Case(shape, shots, algorithm, rule, filters=c["filters"], task_batch=c["task_batch"],
                       queries=c["queries"], inner_steps=cfg["train"]["inner_steps"], backbone=c["backbone"])
            for shape, shots, algorithm, rule in itertools.product(c["shapes"], c["shots"], c["algorithms"], c["rules"])
            if valid_pair(algorithm, rule)]


def run(cfg: Mapping[str, Any], out_path: Path) -> dict[str, Any]:
    c = cfg["analysis"]["cost"]
    device = devices.resolve_device(cfg["compute"]["device"])
    return bench.run(cases(cfg), device, c["repeats"], c["warmup"], c["eval_tasks"], out_path,
                     cfg["compute"]["cpu_allocator"])
