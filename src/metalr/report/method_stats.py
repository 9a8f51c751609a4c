"""Statistics at the level of methods: across training seeds and test classes, not across the tasks of one run.

A run's per-task interval describes one trained network on one task list. Whether a step-size rule beats
the fixed rule as a *method* is a question about training seeds (each seed trains a new network) and
about the population of test classes. The score matrix of a method in one cell is [seeds x test classes]:
entry (s, c) is seed s's accuracy on the queries of class c, over every task of the frozen list that
holds c (the same tasks for every seed and method). From it:

* the spread across seeds and the Student-t interval of the mean over seeds (n_seeds - 1 df);
* a bootstrap over seeds and test classes (``scipy.stats.bootstrap``, percentile intervals): each
  replicate draws seeds and test classes with replacement and averages the statistic over the drawn
  seeds x classes. Seeds are drawn as whole rows: one seed's network scores every class, so its class
  scores are not independent (the per-class independent seed draws of rliable's stratified bootstrap
  assume a separate training per stratum, which would shrink the interval by the number of classes);
* the probability of improvement (Agarwal et al. 2021, rliable): per test class, P(X > Y) + P(X = Y)/2
  over the seeds of X and of Y (the Mann-Whitney U statistic over n_X n_Y, ``scipy.stats.mannwhitneyu``),
  averaged over classes.

With one seed none of these exists (a single pair of networks says nothing about the methods): the
functions return NaN there, which the report writes as n/a.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from scipy import stats as scipy_stats

from metalr.evaluate.stats import CONFIDENCE, t_half_width

NAN = float("nan")


def seed_interval(seed_means: Sequence[float]) -> dict:
    """Mean over seeds, the sample sd of the seed means (ddof=1) and the half-width and bounds of the
    Student-t interval of their mean (n_seeds - 1 df). sd, ci95, low and high are NaN for one seed."""
    values = np.asarray(seed_means, dtype=np.float64)
    if values.ndim != 1 or values.size < 1:
        raise ValueError(f"seed_interval needs a 1-d sequence of at least one seed mean, got shape {values.shape}")
    mean, n = float(values.mean()), int(values.size)
    if n < 2:
        return {"mean": mean, "sd": NAN, "ci95": NAN, "low": NAN, "high": NAN, "n_seeds": n}
    sd = float(values.std(ddof=1))
    half = t_half_width(sd, n)
    return {"mean": mean, "sd": sd, "ci95": half, "low": mean - half, "high": mean + half, "n_seeds": n}


def class_scores(task_classes: Sequence[Sequence[int]], task_class_accuracy: Sequence[Sequence[float]]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy per test class: ([n_classes] int64 class indices, sorted; [n_classes] float64 accuracies).

    ``task_classes`` [tasks x ways] are the classes of each task in label order (indices into the test
    split), ``task_class_accuracy`` [tasks x ways] each class's query accuracy in that task. Every class
    has the same number of queries in every task, so the mean over a class's tasks is its accuracy over
    all its queries. Raises ValueError on shapes that differ or accuracies outside [0, 1].
    """
    classes = np.asarray(task_classes, dtype=np.int64)
    accuracy = np.asarray(task_class_accuracy, dtype=np.float64)
    if classes.ndim != 2 or classes.shape != accuracy.shape or classes.size == 0:
        raise ValueError(f"per-task classes {classes.shape} and per-class accuracies {accuracy.shape} must be "
                         f"equal, non-empty [tasks x ways] arrays")
    if not np.all((accuracy >= 0.0) & (accuracy <= 1.0)):
        raise ValueError("per-class accuracies must lie in [0, 1]")
    ids, inverse = np.unique(classes, return_inverse=True)
    totals = np.bincount(inverse.ravel(), weights=accuracy.ravel(), minlength=ids.size)
    counts = np.bincount(inverse.ravel(), minlength=ids.size)
    return ids, totals / counts


def _check_matrices(*matrices: np.ndarray) -> tuple[int, int]:
    shapes = {m.shape for m in matrices}
    if len(shapes) != 1 or matrices[0].ndim != 2:
        raise ValueError(f"score matrices must be [seeds x classes] of one shape, got {sorted(shapes)}")
    return matrices[0].shape


def probability_of_improvement(treatment: np.ndarray, control: np.ndarray) -> float:
    """Mean over test classes of P(treatment > control) + P(tie)/2 across seeds (rliable's definition), from
    [seeds x classes] score matrices; in [0, 1], 0.5 for exchangeable methods. NaN with fewer than 2 seeds."""
    x, y = np.asarray(treatment, dtype=np.float64), np.asarray(control, dtype=np.float64)
    n_seeds, _ = _check_matrices(x, y)
    if n_seeds < 2:
        return NAN
    return float(_poi(x, y))


def _poi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # U statistic of X over Y per class (seeds on axis -2), divided by the number of seed pairs.
    # The asymptotic method only skips computing exact p-values, which are not used.
    u = scipy_stats.mannwhitneyu(x, y, axis=-2, method="asymptotic").statistic
    return (u / (x.shape[-2] * y.shape[-2])).mean(axis=-1)


def bootstrap_interval(statistic: Callable[..., np.ndarray], matrices: Sequence[np.ndarray], resamples: int,
                       seed: int) -> tuple[float, float]:
    """Percentile ``CONFIDENCE`` interval of ``statistic`` over a bootstrap of seeds and test classes.

    ``matrices`` are [seeds x classes] arrays whose rows are paired (row s of each is seed s).
    ``statistic(*resampled)`` receives them drawn at the same resampled seed rows and class columns,
    with any leading batch axes, and reduces the last two axes. scipy.stats.bootstrap resamples the
    seed indices and the class indices as two independent samples; ``seed`` seeds its numpy Generator.
    Returns (NaN, NaN) for fewer than 2 seeds.
    """
    arrays = [np.asarray(m, dtype=np.float64) for m in matrices]
    n_seeds, n_classes = _check_matrices(*arrays)
    if n_seeds < 2:
        return NAN, NAN

    def resampled(seed_index: np.ndarray, class_index: np.ndarray, axis: int = -1) -> np.ndarray:
        rows = seed_index.astype(np.intp)[..., :, None]
        cols = class_index.astype(np.intp)[..., None, :]
        return statistic(*(a[rows, cols] for a in arrays))

    # Batches bound the memory of the gathered [batch, seeds, classes] arrays to about 8 MB each.
    batch = max(1, min(resamples, 1_000_000 // (n_seeds * n_classes)))
    result = scipy_stats.bootstrap((np.arange(n_seeds), np.arange(n_classes)), resampled, paired=False,
                                   vectorized=True, n_resamples=resamples, batch=batch, method="percentile",
                                   confidence_level=CONFIDENCE, rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return float(low), float(high)


def mean_difference(treatment: np.ndarray, control: np.ndarray) -> np.ndarray:
    """Mean over seeds and classes of treatment - control (the last two axes; leading axes are kept)."""
    return (treatment - control).mean(axis=(-2, -1))


def compare(treatment: np.ndarray, control: np.ndarray, resamples: int, seed: int) -> dict:
    """Treatment against control on paired [seeds x classes] score matrices: the bootstrap interval of the
    mean difference (boot_low, boot_high), the probability of improvement and its bootstrap interval
    (poi, poi_low, poi_high). All NaN with fewer than 2 seeds."""
    x, y = np.asarray(treatment, dtype=np.float64), np.asarray(control, dtype=np.float64)
    boot_low, boot_high = bootstrap_interval(mean_difference, (x, y), resamples, seed)
    poi_low, poi_high = bootstrap_interval(_poi, (x, y), resamples, seed)
    return {"boot_low": boot_low, "boot_high": boot_high, "poi": probability_of_improvement(x, y),
            "poi_low": poi_low, "poi_high": poi_high}


def is_defined(value: float) -> bool:
    return value is not None and math.isfinite(float(value))
