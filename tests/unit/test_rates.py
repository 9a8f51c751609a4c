"""Step-size trajectories: layer_rates agrees with each rule's step; the recorder changes nothing; rates.json."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from metalr import io
from metalr.algorithms import get_algorithm
from metalr.algorithms.inner import adapt
from metalr.config import Run
from metalr.steprules import RULES, make_rule
from metalr.train import loop
from metalr.train.rates import RATES_FILE, RecordingRule, task_rates
from tests.unit.helpers import CONV4, tiny_params, tiny_task
from tests.unit.test_steprules import init_meta, rules_config
from tests.unit.test_train import data_dir, tiny_config  # noqa: F401  (data_dir is a fixture)

STEPS = 3


def perturbed_meta(rule, params):
    gen = torch.Generator().manual_seed(5)
    return {k: v + 0.05 * torch.rand(v.shape, generator=gen, dtype=v.dtype) for k, v in init_meta(rule, "maml", params, STEPS).items()}


@pytest.mark.parametrize("name", sorted(RULES))
def test_recording_changes_nothing_and_layer_rates_average_to_the_logged_rate(name):
    params, task = tiny_params(), tiny_task()
    rule = make_rule(name, rules_config(metaoptimize={"meta_lr": 0.5}, hypergradient={"beta": 0.05}))
    meta = perturbed_meta(rule, params)
    plain, logged = adapt(CONV4.forward, params, list(params), task.xs, task.ys, rule, meta, STEPS, True)
    recorder = RecordingRule(rule)
    recorded, logged_too = adapt(CONV4.forward, params, list(params), task.xs, task.ys, recorder, meta, STEPS, True)
    assert all(torch.equal(plain[k], recorded[k]) for k in params) and torch.equal(logged, logged_too)
    assert len(recorder.steps) == STEPS and list(recorder.steps[0]) == list(params)
    sizes = {k: v.numel() for k, v in params.items()}
    for step, rates in enumerate(recorder.steps):
        mean = sum(rates[k] * sizes[k] for k in rates) / sum(sizes.values())
        assert mean == pytest.approx(float(logged[step].detach()), rel=1e-9)  # Meta-SGD: per-tensor means, weighted


def test_per_layer_rules_record_their_own_tensors():
    params, task = tiny_params(), tiny_task()
    lslr = make_rule("lslr", rules_config())
    meta = perturbed_meta(lslr, params)
    keys, rates = task_rates(get_algorithm("maml", {}, CONV4), params, meta, lslr, [task, tiny_task(seed=4)], STEPS)
    assert keys == list(params)
    for k, per_step in zip(keys, rates):
        assert per_step == pytest.approx(meta["lr." + k].tolist(), rel=1e-12)
    metasgd = make_rule("meta-sgd", rules_config())
    meta = perturbed_meta(metasgd, params)
    keys, rates = task_rates(get_algorithm("anil", {}, CONV4), params, meta, metasgd, [task], STEPS)
    assert keys == CONV4.head_keys(params)  # ANIL adapts only the head
    assert rates[0] == pytest.approx([float(meta["lr." + keys[0]].mean())] * STEPS, rel=1e-12)
    # Blockwise MetaOptimize gives the layers different rates after the first step.
    rule = make_rule("metaoptimize", rules_config(metaoptimize={"meta_lr": 0.5}))
    _, rates = task_rates(get_algorithm("maml", {}, CONV4), params, {}, rule, [task], STEPS)
    assert len({round(r[0], 12) for r in rates}) == 1 and len({round(r[-1], 12) for r in rates}) > 1


def test_training_writes_rates_and_logging_them_changes_no_result(data_dir, tmp_path, monkeypatch):  # noqa: F811
    cfg = tiny_config()
    run = Run("glyphs", 3, 1, "maml", "lslr", 1)
    loop.train(cfg, run, data_dir, tmp_path / "logged", tmp_path / "a.ckpt", progress=False)
    data = io.read_json(tmp_path / "logged" / RATES_FILE)
    assert data["iterations"] == [2, 4, 6] and data["run"]["rule"] == "lslr"
    assert np.array(data["rates"]).shape == (3, len(data["keys"]), cfg["train"]["inner_steps"])
    model = torch.load(tmp_path / "logged" / loop.MODEL_FILE, weights_only=True)
    for k in data["keys"]:  # LSLR's recorded rates are its learned tensors at the end
        assert data["rates"][-1][data["keys"].index(k)] == pytest.approx(model["meta"]["lr." + k].tolist(), rel=1e-6)
    monkeypatch.setattr(loop.RateLog, "record", lambda self, *args: None)
    loop.train(cfg, run, data_dir, tmp_path / "unlogged", tmp_path / "b.ckpt", progress=False)
    for name in (loop.MODEL_FILE, loop.LOG_FILE, loop.LAMBDAS_FILE):
        assert (tmp_path / "logged" / name).read_bytes() == (tmp_path / "unlogged" / name).read_bytes(), name
