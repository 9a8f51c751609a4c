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
def test_ci95_is_196_sd_over_sqrt_n(values):
    stats = mean_ci95(values)
    assert stats["mean"] == pytest.approx(statistics.fmean(values), abs=1e-12)
    assert stats["ci95"] == pytest.approx(1.96 * statistics.stdev(values) / math.sqrt(len(values)), abs=1e-12)
    assert stats["n_tasks"] == len(values)


def test_ci95_of_600_known_accuracies():
    values = np.array([0.6, 0.8] * 300)  # sd (ddof=1) = 0.1 * sqrt(600/599)
    stats = mean_ci95(values)
    assert stats["mean"] == pytest.approx(0.7)
    assert stats["ci95"] == pytest.approx(1.96 * 0.1 * math.sqrt(600 / 599) / math.sqrt(600))


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
