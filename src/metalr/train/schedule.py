"""The outer (meta) learning rate per iteration: constant, or MAML++'s cosine annealing."""
from __future__ import annotations

import math
from typing import Any, Mapping


def _constant(tcfg: Mapping[str, Any], iteration: int) -> float:
    return tcfg["outer_lr"]


def _cosine(tcfg: Mapping[str, Any], iteration: int) -> float:
    # Antoniou et al. 2018: anneal from outer_lr to outer_lr_min over the whole run.
    high, low = tcfg["outer_lr"], tcfg["outer_lr_min"]
    return low + 0.5 * (high - low) * (1 + math.cos(math.pi * iteration / tcfg["iterations"]))


SCHEDULES = {"constant": _constant, "cosine": _cosine}


def outer_lr(tcfg: Mapping[str, Any], iteration: int) -> float:
    """Learning rate of the Adam step that ends iteration ``iteration`` (0-based)."""
    return SCHEDULES[tcfg["outer_lr_schedule"]](tcfg, iteration)
