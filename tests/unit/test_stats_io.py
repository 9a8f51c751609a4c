"""The confidence interval and atomic writes."""
from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metalr import io
from metalr.evaluate.stats import mean_ci95


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1), min_size=2, max_size=700))
def test_ci95_is_the_student_t_interval_of_the_mean(values):
    from scipy import stats as scipy_stats

    stats = mean_ci95(values)
    assert stats["mean"] == pytest.approx(statistics.fmean(values), abs=1e-12)
    sem = statistics.stdev(values) / math.sqrt(len(values))
    assert stats["ci95"] == pytest.approx(scipy_stats.t.ppf(0.975, len(values) - 1) * sem, abs=1e-12)
    if sem > 1e-9:  # the same interval as scipy's own t interval
        low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=statistics.fmean(values), scale=sem)
        assert (stats["mean"] - stats["ci95"], stats["mean"] + stats["ci95"]) == pytest.approx((low, high), abs=1e-12)
    assert stats["n_tasks"] == len(values)


def test_ci95_of_600_known_accuracies():
    values = np.array([0.6, 0.8] * 300)  # sd (ddof=1) = 0.1 * sqrt(600/599)
    stats = mean_ci95(values)
    assert stats["mean"] == pytest.approx(0.7)
    # t_{0.975, 599} = 1.963932 (tables of Student's t; 0.2% above the normal 1.959964)
    assert stats["ci95"] == pytest.approx(1.963932 * 0.1 * math.sqrt(600 / 599) / math.sqrt(600), rel=1e-6)
    assert stats["ci95"] > 1.96 * 0.1 * math.sqrt(600 / 599) / math.sqrt(600)  # the normal interval is narrower


def test_ci95_of_three_tasks_by_hand():
    # values 0.2, 0.4, 0.9: mean 0.5, sd = sqrt(((-0.3)^2 + (-0.1)^2 + 0.4^2) / 2) = sqrt(0.13); t_{0.975, 2} = 4.302653
    stats = mean_ci95([0.2, 0.4, 0.9])
    assert stats["mean"] == pytest.approx(0.5)
    assert stats["std"] == pytest.approx(math.sqrt(0.13))
    assert stats["ci95"] == pytest.approx(4.302653 * math.sqrt(0.13) / math.sqrt(3), rel=1e-6)


def test_ci_needs_two_tasks():
    with pytest.raises(ValueError):
        mean_ci95([0.5])


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    io.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert io.read_json(target) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_canonical_json_refuses_nan():
    with pytest.raises(ValueError):
        io.canonical_json({"loss": float("nan")})


@given(st.lists(st.floats(0, 1), min_size=3, max_size=50), st.lists(st.floats(0, 1), min_size=3, max_size=50))
@settings(max_examples=40, deadline=None)
def test_paired_difference_matches_a_one_sample_t_interval_on_the_differences(a, b):
    from scipy import stats as scipy_stats

    from metalr.evaluate.stats import paired_difference

    n = min(len(a), len(b))
    a, b = np.array(a[:n]), np.array(b[:n])
    diff = a - b
    result = paired_difference(a, b)
    assert result["mean"] == pytest.approx(diff.mean(), abs=1e-12)
    if diff.std(ddof=1) > 1e-9:
        low, high = scipy_stats.t.interval(0.95, n - 1, loc=diff.mean(), scale=scipy_stats.sem(diff))
        assert (result["low"], result["high"]) == pytest.approx((low, high), rel=1e-9, abs=1e-12)
        assert result["p_value"] == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue, rel=1e-9, abs=1e-12)
    # swapping the methods mirrors the interval and keeps the p-value
    swapped = paired_difference(b, a)
    assert swapped["mean"] == pytest.approx(-result["mean"], abs=1e-12)
    assert swapped["p_value"] == pytest.approx(result["p_value"], rel=1e-9, abs=1e-12)


def test_paired_interval_is_narrower_than_the_unpaired_one_when_tasks_dominate():
    from metalr.evaluate.stats import paired_difference

    rng = np.random.default_rng(0)
    difficulty = rng.uniform(0.2, 0.9, 600)
    control = difficulty + rng.normal(0, 0.02, 600)
    treatment = difficulty + 0.01 + rng.normal(0, 0.02, 600)
    paired = paired_difference(treatment, control)
    unpaired = math.hypot(mean_ci95(treatment)["ci95"], mean_ci95(control)["ci95"])
    assert paired["ci95"] < unpaired / 5
    assert paired["low"] > 0 and paired["p_value"] < 1e-6


def test_paired_difference_refuses_unpaired_inputs():
    from metalr.evaluate.stats import paired_difference

    with pytest.raises(ValueError, match="equal-length"):
        paired_difference([0.1, 0.2, 0.3], [0.1, 0.2])
    identical = paired_difference([0.5, 0.6], [0.5, 0.6])
    assert identical["mean"] == 0 and identical["p_value"] == 1.0
