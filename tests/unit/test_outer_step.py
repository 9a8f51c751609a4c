"""Outer step-size adaptation (MetaOptimize on Adam's step size): sign, the η = 0 identity, training."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from metalr import io
from metalr.train.loop import LOG_FILE, train
from metalr.train.outer_step import MetaOptimizeStep, ScheduledStep, make_outer_step
from metalr.train.rates import RATES_FILE
from tests.unit.test_train import RUN, data_dir, tiny_config  # noqa: F401  (data_dir is a fixture)

SETTINGS = {"method": "metaoptimize", "meta_lr": 0.0, "trace_decay": 0.9, "variant": "blockwise"}


def optimise_quadratic(lr: float, iterations: int, **settings) -> tuple[torch.Tensor, list[float]]:
    """Adam on ½ Σ c_i w_i² (two blocks); returns the final weights and the step sizes taken."""
    gen = torch.Generator().manual_seed(0)
    trainable = {"a": torch.randn(8, generator=gen, dtype=torch.float64).requires_grad_(True),
                 "b": torch.randn(3, generator=gen, dtype=torch.float64).requires_grad_(True)}
    curvature = {"a": torch.linspace(0.5, 2.0, 8, dtype=torch.float64), "b": torch.ones(3, dtype=torch.float64)}
    outer = make_outer_step({"outer_lr_adaptation": {**SETTINGS, **settings}}, trainable)
    optimizer = torch.optim.Adam(outer.param_groups(), lr=lr)
    sizes = []
    for _ in range(iterations):
        optimizer.zero_grad()
        sum(0.5 * (curvature[k] * v**2).sum() for k, v in trainable.items()).backward()
        outer.before_step(optimizer, lr)
        optimizer.step()
        outer.after_step()
        sizes.append(outer.step_sizes(optimizer))
    return torch.cat([v.detach() for v in trainable.values()]), sizes


def plain_adam(lr: float, iterations: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(8, generator=gen, dtype=torch.float64).requires_grad_(True)
    b = torch.randn(3, generator=gen, dtype=torch.float64).requires_grad_(True)
    curvature = torch.linspace(0.5, 2.0, 8, dtype=torch.float64)
    optimizer = torch.optim.Adam([a, b], lr=lr)
    for _ in range(iterations):
        optimizer.zero_grad()
        (0.5 * (curvature * a**2).sum() + 0.5 * (b**2).sum()).backward()
        optimizer.step()
    return torch.cat([a.detach(), b.detach()])


@pytest.mark.parametrize("variant", ["scalar", "blockwise"])
def test_zero_meta_rate_is_plain_adam_bit_for_bit(variant):
    ours, sizes = optimise_quadratic(0.01, 30, variant=variant)
    assert torch.equal(ours, plain_adam(0.01, 30))
    assert all(s == 0.01 for row in sizes for s in row)


@pytest.mark.parametrize("variant", ["scalar", "blockwise"])
def test_a_too_small_step_grows_and_a_too_large_one_shrinks(variant):
    # Far from the minimum a tiny step keeps moving downhill: the trace agrees with -g, <g, h> < 0.
    _, small = optimise_quadratic(1e-4, 40, meta_lr=0.1, variant=variant)
    assert all(s > 2e-4 for s in small[-1])
    # A step much larger than the distance to the minimum zig-zags: <g, h> > 0 and it shrinks.
    _, large = optimise_quadratic(3.0, 40, meta_lr=0.1, variant=variant)
    assert all(s < 1.0 for s in large[-1])
    # Negative control: without meta step size nothing moves.
    _, fixed = optimise_quadratic(1e-4, 40, meta_lr=0.0, variant=variant)
    assert all(s == 1e-4 for s in fixed[-1])


def test_blocks_and_method_none():
    trainable = {"x": torch.zeros(2, requires_grad=True), "y": torch.zeros(1, requires_grad=True)}
    assert isinstance(make_outer_step({"outer_lr_adaptation": {**SETTINGS, "method": "none"}}, trainable),
                      ScheduledStep)
    assert make_outer_step({"outer_lr_adaptation": SETTINGS}, trainable).blocks == ["x", "y"]
    assert MetaOptimizeStep(trainable, {**SETTINGS, "variant": "scalar"}).blocks == ["all"]


def test_training_logs_outer_step_sizes_and_resumes_identically(data_dir, tmp_path, monkeypatch):  # noqa: F811
    adaptation = {**SETTINGS, "meta_lr": 0.1, "variant": "scalar"}
    cfg = tiny_config(outer_lr_adaptation=adaptation)
    train(cfg, RUN, data_dir, tmp_path / "full", tmp_path / "full.ckpt", progress=False)
    log = io.read_json(tmp_path / "full" / LOG_FILE)
    values = np.array(log["outer_step_size"]["values"])
    assert log["outer_step_size"]["blocks"] == ["all"] and values.shape == (3, 1)
    assert not np.all(values == cfg["train"]["outer_lr"])  # it adapted
    # Interrupted after the checkpoint at iteration 3, then resumed: the same files.
    from metalr.train import loop

    def crash_at_five(tcfg, iteration):
        if iteration == 4:
            raise KeyboardInterrupt
        return tcfg["outer_lr"]

    monkeypatch.setattr(loop, "outer_lr", crash_at_five)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, RUN, data_dir, tmp_path / "resumed", tmp_path / "resumed.ckpt", progress=False)
    monkeypatch.undo()
    assert (tmp_path / "resumed.ckpt").exists()
    train(cfg, RUN, data_dir, tmp_path / "resumed", tmp_path / "resumed.ckpt", progress=False)
    for name in (LOG_FILE, RATES_FILE, "lambdas.npy"):
        assert (tmp_path / "full" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes(), name
