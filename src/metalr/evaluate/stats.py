"""Summary statistics of per-task accuracies."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Z95 = 1.96


def mean_ci95(values: Sequence[float]) -> dict:
    """Mean and the half-width of the normal 95% interval, 1.96 * sd / sqrt(n).

    sd is the sample standard deviation (ddof=1); with 600 tasks it differs from the population sd
    by a factor sqrt(600/599), under 0.1%.
    """
    array = np.asarray(values, dtype=np.float64)
    n = array.size
    if n < 2:
        raise ValueError(f"a confidence interval needs at least 2 tasks, got {n}")
    sd = float(array.std(ddof=1))
    return {"mean": float(array.mean()), "ci95": Z95 * sd / math.sqrt(n), "std": sd, "n_tasks": int(n)}
