"""`metalr bench`: the reference loop agrees with metalr before anything is timed; FLOPs and utilisation."""
from __future__ import annotations

import pytest
import torch

from metalr import bench, io
from metalr.models import get_backbone


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
    peak = report["matmul_peak"]
    assert peak["flop_per_s"] >= peak["flop_per_s_median"] > 0 and peak["size"] == bench.MATMUL_SIZE["cpu"]
    for name in expected_allocator:
        timing = row[name]
        assert timing["flops_per_iteration"] > 0
        assert timing["flop_per_s"] == pytest.approx(timing["flops_per_iteration"] / timing["iteration_s"]["median"])
        assert timing["utilisation"] == pytest.approx(timing["flop_per_s"] / peak["flop_per_s"])
        assert timing["threads"] == peak["threads"]  # the matmul peak ran in the cases' conditions
    assert report["settings"]["tf32"] is False
    assert len(lines) == 4 and "matmul peak" in lines[0] and lines[1] == bench.HEADER and "anil" in lines[3]
    assert lines[3].split()[-2:] == [f"{row['metalr']['flops_per_iteration'] / 1e9:.1f}",
                                     f"{row['metalr']['utilisation']:.2f}"]


def test_no_same_allocator_column_when_metalr_uses_the_system_allocator():
    assert set(bench.timed_variants("cpu", "system")) == {"metalr", "reference"}
    assert set(bench.timed_variants("cuda", "retain")) == {"metalr", "reference"}  # it tunes CPU memory only


def test_cases_without_a_reference_are_timed_for_metalr_alone(tmp_path):
    cases = [bench.Case("cifar_fs", 1, "reptile", "hypergradient", queries=2, task_batch=2, inner_steps=2, filters=3),
             bench.Case("cifar_fs", 1, "maml", "fixed", queries=2, task_batch=1, inner_steps=1, filters=2,
                        backbone="resnet12")]  # the reference loop implements Conv-4 only
    assert not any(bench.has_reference(case) for case in cases)
    lines = []
    report = bench.run(cases, "cpu", 1, 0, 1, tmp_path / "bench.json", "retain", progress=lines.append)
    for row in report["results"]:
        assert "reference" not in row and row["metalr"]["iteration_s"]["repeats"] == 1
        assert row["metalr"]["flops_per_iteration"] > 0 and "utilisation" in row["metalr"]
    assert report["settings"]["warmup"] == 1  # the FLOPs are counted in a warm-up iteration
    assert "resnet12" in lines[-1] and lines[-1].split()[6:10] == ["--"] * 4 and lines[-1].split()[11] == "--"


def conv4_forward_flops(case: bench.Case, images: int) -> int:
    """Hand count: 2 FLOP per multiply-add of every 3x3 convolution and of the head."""
    channels, side = bench.SHAPES[case.shape]
    total = 0
    for _ in range(4):
        total += 2 * images * case.filters * side * side * channels * 9
        channels, side = case.filters, side // 2
    return total + 2 * images * case.ways * case.filters * side * side


def test_flops_are_counted_for_every_convolution_and_the_head():
    case = bench.Case("cifar_fs", 1, "maml", "fixed", filters=3)
    params = bench.make_params(case, torch.float32, "cpu")
    x = bench.make_tasks(case, 1, torch.float32, "cpu")[0].xq
    with torch.no_grad():
        counted = bench.count_flops(lambda: get_backbone("conv4").forward(params, x))
    assert counted == conv4_forward_flops(case, len(x))
    with torch.no_grad():
        assert bench.count_flops(lambda: x.sum()) == 0  # element-wise work is not counted


def test_a_meta_iteration_counts_each_task():
    one, two = (bench.Case("cifar_fs", 1, "fomaml", "fixed", queries=2, task_batch=n, inner_steps=2, filters=2)
                for n in (1, 2))
    counts = []
    for case in (one, two):
        params = bench.make_params(case, torch.float32, "cpu")
        tasks = bench.make_tasks(case, case.task_batch, torch.float32, "cpu")
        counts.append(bench.count_flops(lambda: bench.meta_step(case, "metalr", params, tasks)))
    assert counts[1] == 2 * counts[0] > 0


def test_the_matmul_peak_records_its_conditions():
    peak = bench.matmul_throughput("cpu", repeats=2, size=128)
    assert peak["size"] == 128 and peak["dtype"] == "float32" and peak["tf32"] is False
    assert peak["threads"] == torch.get_num_threads() and peak["flop_per_s"] >= peak["flop_per_s_median"] > 0


def test_timing_needs_a_warm_up_iteration_to_count_flops():
    case = bench.Case("cifar_fs", 1, "maml", "fixed", queries=2, task_batch=1, inner_steps=1, filters=2)
    with pytest.raises(ValueError, match="warmup must be >= 1"):
        bench.time_case(case, "metalr", "cpu", 1, 0, 1, "system")


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
