"""Summary statistics of per-task accuracies: Student-t intervals for one mean and for paired differences."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95  # level of every interval metalr reports


def t_half_width(sd: float, n: int) -> float:
    """Half-width of the two-sided ``CONFIDENCE`` Student-t interval of a mean: t_{0.975, n-1} * sd / sqrt(n)."""
    return float(scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sd / math.sqrt(n)


def mean_ci95(values: Sequence[float]) -> dict:
    """Mean of the per-task accuracies and the half-width of its 95% Student-t interval,
    t_{0.975, n-1} * sd / sqrt(n), sd the sample standard deviation (ddof=1).

    Returns {"mean", "ci95", "std", "n_tasks"} (fractions, floats; n_tasks an int). At 600 tasks
    t_{0.975, 599} = 1.9639, 0.2% above the normal quantile 1.96. A task list whose tasks repeat gives
    an interval over its tasks as drawn (tasks are drawn independently, so a repeat is a legitimate
    draw); the task list records how many of them are distinct. Raises ValueError for fewer than 2 values.
    """
    array = np.asarray(values, dtype=np.float64)
    n = array.size
    if n < 2:
        raise ValueError(f"a confidence interval needs at least 2 tasks, got {n}")
    sd = float(array.std(ddof=1))
    return {"mean": float(array.mean()), "ci95": t_half_width(sd, n), "std": sd, "n_tasks": int(n)}


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
    half = t_half_width(sd, n)
    if sd == 0.0:
        p_value = 1.0 if mean == 0.0 else 0.0
    else:
        t_stat = mean / (sd / math.sqrt(n))
        p_value = float(2.0 * scipy_stats.t.sf(abs(t_stat), n - 1))
    return {"mean": mean, "ci95": half, "low": mean - half, "high": mean + half, "p_value": p_value,
            "n_tasks": int(n)}
