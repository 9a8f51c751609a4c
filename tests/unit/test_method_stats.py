"""Statistics at the level of methods (metalr.report.method_stats), class-level scores and distinct tasks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from metalr.algorithms.base import score
from metalr.data.arrays import SplitArrays
from metalr.data.episodes import TASK_LIST_FORMAT, distinct_tasks, load_task_list, make_task_list
from metalr.io import write_json
from metalr.report import method_stats, paired

CONTROL = np.random.default_rng(7).uniform(0.3, 0.8, size=(3, 12))  # [seeds x test classes]


# --------------------------------------------------------------------------- across seeds

def test_seed_interval_by_hand():
    # seed means 0.60, 0.64, 0.71: mean 0.65, sd = sqrt((0.05^2 + 0.01^2 + 0.06^2) / 2) = sqrt(0.0031)
    got = method_stats.seed_interval([0.60, 0.64, 0.71])
    half = 4.302653 * math.sqrt(0.0031) / math.sqrt(3)  # t_{0.975, 2}
    assert got["mean"] == pytest.approx(0.65) and got["sd"] == pytest.approx(math.sqrt(0.0031))
    assert (got["ci95"], got["low"], got["high"]) == pytest.approx((half, 0.65 - half, 0.65 + half), rel=1e-6)
    assert got["n_seeds"] == 3


def test_one_seed_has_no_spread_and_no_interval():
    got = method_stats.seed_interval([0.6])
    assert got["mean"] == 0.6 and got["n_seeds"] == 1
    assert all(math.isnan(got[k]) for k in ("sd", "ci95", "low", "high"))
    assert all(math.isnan(v) for v in method_stats.compare(CONTROL[:1], CONTROL[:1], 200, 0).values())
    with pytest.raises(ValueError):
        method_stats.seed_interval([])


# --------------------------------------------------------------------------- class-level scores

def test_class_accuracy_of_one_task_by_hand():
    # 3 classes x 2 queries; predictions: class 0 both right, class 1 one right, class 2 none
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    predicted = torch.tensor([0, 0, 1, 2, 0, 1])
    logits = torch.nn.functional.one_hot(predicted, 3).double()
    result = score(logits, labels, torch.zeros(1))
    assert result.query_class_accuracy.tolist() == [1.0, 0.5, 0.0]
    assert float(result.query_accuracy) == pytest.approx(0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # counts stay exact under bf16
        low = score(logits.bfloat16(), labels, torch.zeros(1))
    assert low.query_class_accuracy.dtype == torch.float32 and low.query_class_accuracy.tolist() == [1.0, 0.5, 0.0]


def test_class_scores_average_each_class_over_its_tasks():
    classes = [[4, 9, 2], [2, 4, 7]]
    accuracy = [[1.0, 0.5, 0.25], [0.75, 0.0, 1.0]]
    ids, scores = method_stats.class_scores(classes, accuracy)
    assert ids.tolist() == [2, 4, 7, 9]
    assert scores.tolist() == [pytest.approx((0.25 + 0.75) / 2), pytest.approx(0.5), 1.0, 0.5]
    with pytest.raises(ValueError, match=r"\[tasks x ways\]"):
        method_stats.class_scores(classes, [[1.0, 0.5]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        method_stats.class_scores(classes, [[1.0, 0.5, 0.25], [0.75, float("nan"), 1.0]])


# --------------------------------------------------------------------------- probability of improvement

def test_probability_of_improvement_by_hand():
    # one class, seeds x = (0.5, 0.7), y = (0.5, 0.6): pairs (0.5, 0.5) tie, (0.5, 0.6) loss, (0.7, *) two wins
    assert method_stats.probability_of_improvement([[0.5], [0.7]], [[0.5], [0.6]]) == pytest.approx(2.5 / 4)
    # averaged over classes: the second class is a clean loss
    x, y = [[0.5, 0.1], [0.7, 0.2]], [[0.5, 0.3], [0.6, 0.4]]
    assert method_stats.probability_of_improvement(x, y) == pytest.approx((2.5 / 4 + 0.0) / 2)


def test_a_method_better_on_every_class_and_seed():
    better = CONTROL + 0.02
    assert method_stats.probability_of_improvement(CONTROL + 1.0, CONTROL) == 1.0
    got = method_stats.compare(better, CONTROL, resamples=2000, seed=0)
    assert got["boot_low"] > 0 and got["boot_high"] == pytest.approx(0.02)  # every replicate differs by 0.02
    # better by 0.02 in every (seed, class) cell, but not on every pair of seeds: P < 1
    assert 0.5 < got["poi"] < 1 and got["poi_low"] <= got["poi"] <= got["poi_high"]
    far = method_stats.compare(CONTROL + 1.0, CONTROL, resamples=2000, seed=0)
    assert (far["poi"], far["poi_low"], far["poi_high"]) == (1.0, 1.0, 1.0) and far["boot_low"] > 0
    worse = method_stats.compare(CONTROL, CONTROL + 1.0, resamples=2000, seed=0)
    assert worse["poi"] == 0.0 and worse["boot_high"] < 0


def test_identical_methods():
    same = method_stats.compare(CONTROL, CONTROL, resamples=2000, seed=0)
    assert same["poi"] == 0.5 and same["poi_low"] == 0.5 == same["poi_high"]
    assert same["boot_low"] <= 0 <= same["boot_high"]
    # two methods with the same score distribution: the intervals hold 0 and 0.5
    other = np.random.default_rng(8).uniform(0.3, 0.8, size=CONTROL.shape)
    exchangeable = method_stats.compare(other, CONTROL, resamples=2000, seed=0)
    assert exchangeable["boot_low"] < 0 < exchangeable["boot_high"]
    assert exchangeable["poi_low"] < 0.5 < exchangeable["poi_high"]


def test_the_bootstrap_keeps_each_seed_whole():
    """One seed's network scores every class: a seed effect shared by all classes must widen the interval.
    Resampling the seeds independently per class (rliable's stratified bootstrap) would average it away."""
    seed_effect = np.array([0.05, -0.05, 0.0])[:, None]
    treatment = CONTROL + seed_effect + np.random.default_rng(9).normal(0, 0.001, CONTROL.shape)
    low, high = method_stats.bootstrap_interval(method_stats.mean_difference, (treatment, CONTROL), 4000, 0)
    assert low < 0 < high and high - low > 0.05
    # the negative control: independent draws of the seeds per class give an interval about sqrt(12) narrower
    rng = np.random.default_rng(0)
    diff = treatment - CONTROL
    per_class = [diff[rng.integers(0, 3, size=diff.shape), np.arange(diff.shape[1])].mean() for _ in range(4000)]
    assert np.subtract(*np.quantile(per_class, [0.975, 0.025])) < (high - low) / 2


def test_the_bootstrap_resamples_the_test_classes():
    """With identical seeds only the classes vary: the interval is the class bootstrap's (scipy, one sample)."""
    rng = np.random.default_rng(10)
    class_diff = rng.normal(0.01, 0.03, size=40)
    control = np.tile(rng.uniform(0.3, 0.8, size=40), (3, 1))
    treatment = control + class_diff
    low, high = method_stats.bootstrap_interval(method_stats.mean_difference, (treatment, control), 8000, 0)
    reference = scipy_stats.bootstrap((class_diff,), np.mean, method="percentile", n_resamples=8000,
                                      rng=np.random.default_rng(1)).confidence_interval
    assert (low, high) == pytest.approx((reference.low, reference.high), abs=0.002)
    assert high - low > 0.01


def test_the_bootstrap_is_seeded():
    other = CONTROL + np.random.default_rng(11).normal(0, 0.05, CONTROL.shape)
    first = method_stats.compare(other, CONTROL, 500, seed=3)
    assert method_stats.compare(other, CONTROL, 500, seed=3) == first
    assert method_stats.compare(other, CONTROL, 500, seed=4)["boot_low"] != first["boot_low"]
    with pytest.raises(ValueError, match=r"\[seeds x classes\]"):
        method_stats.compare(other[:, :5], CONTROL, 500, 0)


def test_verdict_needs_both_intervals_on_one_side():
    assert paired.verdict(0.01, 0.03, 0.005, 0.02) == paired.BETTER
    assert paired.verdict(-0.03, -0.01, -0.02, -0.001) == paired.WORSE
    assert paired.verdict(0.01, 0.03, -0.001, 0.02) == paired.UNCLEAR  # the bootstrap holds 0
    assert paired.verdict(-0.01, 0.03, 0.001, 0.02) == paired.UNCLEAR  # the seed interval holds 0
    nan = float("nan")
    assert paired.verdict(nan, nan, nan, nan) == paired.ONE_SEED


# --------------------------------------------------------------------------- distinct tasks

def test_distinct_tasks_ignore_label_order_only():
    task = {"classes": [3, 1], "support": [[10], [4]], "query": [[11, 12], [5, 6]]}
    relabeled = {"classes": [1, 3], "support": [[4], [10]], "query": [[6, 5], [12, 11]]}
    other_images = {"classes": [3, 1], "support": [[13], [4]], "query": [[11, 12], [5, 6]]}
    assert distinct_tasks([task, task, relabeled]) == 1
    assert distinct_tasks([task, relabeled, other_images]) == 2


def test_a_task_list_of_a_small_split_counts_its_repeats(tmp_path):
    # 3 classes of 2 images, 3-way 1-shot 1-query: 2^3 = 8 possible tasks up to label order
    split = SplitArrays(images=np.zeros((6, 1, 4, 4), dtype=np.uint8), labels=np.repeat(np.arange(3), 2),
                        classes=("a", "b", "c"))
    tasks = make_task_list(split, dataset="glyphs", split_name="test", ways=3, shots=1, queries=1, tasks=40, seed=1,
                           split_sha256={})
    assert tasks["format"] == TASK_LIST_FORMAT and tasks["tasks"] == 40
    assert 1 < tasks["distinct_tasks"] <= 8 and tasks["distinct_tasks"] == distinct_tasks(tasks["episodes"])
    write_json(tmp_path / "t.json", tasks)
    assert load_task_list(tmp_path / "t.json")["distinct_tasks"] == tasks["distinct_tasks"]
    # a task list of the previous format has no count: refused, with the fix
    old = {k: v for k, v in tasks.items() if k not in ("distinct_tasks", "sha256")}
    write_json(tmp_path / "old.json", {**old, "format": 1, "sha256": "x"})
    with pytest.raises(ValueError, match=r"format 1.*regenerate it"):
        load_task_list(tmp_path / "old.json")
