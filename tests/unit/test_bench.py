"""`metalr bench`: the reference loop agrees with metalr before anything is timed."""
from __future__ import annotations

import pytest
import torch

from metalr import bench, io


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "anil"])
@pytest.mark.parametrize("rule", ["fixed", "mlplr"])
def test_reference_loop_matches_metalr_in_float64(algorithm, rule):
    case = bench.Case("cifar_fs", 1, algorithm, rule, queries=2, task_batch=2, inner_steps=2, filters=3)
    assert bench.check_gradients(case) < 1e-10


def test_a_wrong_implementation_is_refused_before_timing(monkeypatch, tmp_path):
    case = bench.Case("cifar_fs", 1, "maml", "fixed", queries=2, task_batch=2, inner_steps=2, filters=3)
    monkeypatch.setitem(bench.IMPLEMENTATIONS, "metalr",
                        lambda c, p, t, s, g: bench.reference_query_loss(bench.Case(**{**c.__dict__, "algorithm": "fomaml"}), p, t, s, g))
    with pytest.raises(RuntimeError, match="differs from the reference"):
        bench.run([case], "cpu", 1, 0, 2, tmp_path / "bench.json", "system", progress=lambda line: None)
    assert not (tmp_path / "bench.json").exists()


def test_bench_writes_timings_ratios_and_environment(tmp_path):
    case = bench.Case("cifar_fs", 1, "anil", "mlplr", queries=2, task_batch=2, inner_steps=2, filters=3)
    lines = []
    report = bench.run([case], "cpu", 2, 1, 3, tmp_path / "bench.json", "retain", progress=lines.append)
    assert io.read_json(tmp_path / "bench.json") == report
    row = report["results"][0]
    # The reference runs as a plain user would (system allocator), and once more with metalr's setting.
    expected_allocator = {"metalr": "retain", "reference": "system", bench.SAME_ALLOCATOR: "retain"}
    for name, setting in expected_allocator.items():
        timing = row[name]["iteration_s"]
        assert timing["repeats"] == 2 and 0 < timing["min"] <= timing["median"] <= timing["max"]
        assert row[name]["eval"]["extrapolated"] and row[name]["peak_memory_mib"] > 0
        assert row[name]["cpu_allocator"] == setting
    for column, suffix in (("reference", ""), (bench.SAME_ALLOCATOR, "_same_allocator")):
        assert row[f"speedup_metalr_vs_reference{suffix}"] == pytest.approx(
            row[column]["iteration_s"]["median"] / row["metalr"]["iteration_s"]["median"])
    assert report["device"]["torch"] == torch.__version__
    assert len(lines) == 1 and "anil" in lines[0]


def test_no_same_allocator_column_when_metalr_uses_the_system_allocator():
    assert set(bench.timed_variants("cpu", "system")) == {"metalr", "reference"}
    assert set(bench.timed_variants("cuda", "retain")) == {"metalr", "reference"}  # it tunes CPU memory only


def test_cases_without_a_reference_are_timed_for_metalr_alone(tmp_path):
    case = bench.Case("cifar_fs", 1, "reptile", "hypergradient", queries=2, task_batch=2, inner_steps=2, filters=3)
    assert not bench.has_reference(case)
    row = bench.run([case], "cpu", 1, 0, 1, tmp_path / "bench.json", "retain", progress=lambda line: None)["results"][0]
    assert "reference" not in row and row["metalr"]["iteration_s"]["repeats"] == 1


def test_learned_rule_tensors_enter_the_timed_meta_objective():
    case = bench.Case("cifar_fs", 1, "maml", "lslr", queries=2, task_batch=1, inner_steps=2, filters=3)
    params = bench.make_params(case, torch.float64, "cpu")
    task = bench.make_tasks(case, 1, torch.float64, "cpu")[0]
    loss = bench.metalr_query_loss(case, params, task, case.inner_steps, True)
    leaves, stack = set(), [loss.grad_fn]
    while stack:  # the autograd graph's leaves: the model's parameters and LSLR's rates
        node = stack.pop()
        if node is None:
            continue
        if hasattr(node, "variable"):
            leaves.add(tuple(node.variable.shape))
        stack += [n for n, _ in node.next_functions]
    assert (case.inner_steps,) in leaves  # an LSLR rate vector (one rate per inner step)


def _fails(message: str) -> dict:
    raise ValueError(message)


def test_a_failing_subprocess_raises_with_its_traceback_instead_of_hanging():
    with pytest.raises(RuntimeError, match="(?s)_fails.*ValueError: boom"):
        bench.in_subprocess(_fails, "boom")


def _peak_after_touching(mib: int) -> float:
    block = torch.ones(mib * 2**20 // 4)
    del block
    return bench.peak_rss_mib()


def test_a_case_reports_its_own_peak_memory_not_its_parents():
    parent_block = torch.ones(768 * 2**20 // 4)  # the parent's peak is now above 768 MiB
    child_peak = bench.in_subprocess(_peak_after_touching, 64)
    del parent_block
    assert 64 < child_peak < 700
    assert bench.peak_rss_mib() > 768
