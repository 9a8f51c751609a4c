"""Summary statistics of per-task accuracies."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats as scipy_stats

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


def paired_difference(treatment: Sequence[float], control: Sequence[float]) -> dict:
    """Paired comparison of two methods scored on the same tasks: mean of (treatment - control),
    its 95% CI from the t distribution, and the two-sided paired t-test's p-value.

    Tasks are shared, so the per-task differences remove the task-difficulty variance that two
    independent intervals would double-count. ``p_value`` is 1.0 when every difference is 0.
    """
    a = np.asarray(treatment, dtype=np.float64)
    b = np.asarray(control, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores need equal-length 1-d sequences, got shapes {a.shape} and {b.shape}")
    n = a.size
    if n < 2:
        raise ValueError(f"a paired interval needs at least 2 tasks, got {n}")
    diff = a - b
    mean = float(diff.mean())
    sd = float(diff.std(ddof=1))
    t_crit = float(scipy_stats.t.ppf(0.975, n - 1))
    half = t_crit * sd / math.sqrt(n)
    if sd == 0.0:
        p_value = 1.0 if mean == 0.0 else 0.0
    else:
        t_stat = mean / (sd / math.sqrt(n))
        p_value = float(2.0 * scipy_stats.t.sf(abs(t_stat), n - 1))
    return {"mean": mean, "ci95": half, "low": mean - half, "high": mean + half, "p_value": p_value,
            "n_tasks": int(n)}
