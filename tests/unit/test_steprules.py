"""Step-size rules beyond fixed/MLPLR: meta-gradients, degenerate settings, and a run end to end."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from metalr import config as config_mod
from metalr import io
from metalr.algorithms import get_algorithm
from metalr.algorithms.inner import adapt
from metalr.config import Run
from metalr.data.arrays import load_split
from metalr.data.episodes import make_task_list
from metalr.evaluate.evaluate import evaluate
from metalr.models import conv4
from metalr.steprules import make_rule
from metalr.steprules.base import SupportState, inner_update
from metalr.train.loop import train
from tests.unit.helpers import tiny_params, tiny_task
from tests.unit.test_train import data_dir, tiny_config  # noqa: F401  (data_dir is a fixture)

LR = 0.3
STEPS = 2
DEFAULTS = config_mod.load([config_mod.DEFAULT_CONFIG])["rules"]
LEARNED = ["meta-sgd", "lslr", "alfa"]
NEW_RULES = LEARNED + ["hypergradient", "metaoptimize"]


def rules_config(**overrides) -> dict:
    """The shipped settings, with every initial rate set to LR (so degenerate cases compare to fixed LR)."""
    rules = copy.deepcopy(DEFAULTS)
    rules["fixed"]["lr"] = LR
    rules["meta-sgd"]["lr"] = LR
    rules["lslr"]["lr"] = LR
    rules["hypergradient"]["lr"] = LR
    rules["metaoptimize"]["lr"] = LR
    rules["alfa"]["lr"] = LR
    for name, values in overrides.items():
        rules[name].update(values)
    return rules


def adapted(algorithm: str, params, meta, rule, task, steps: int = STEPS):
    alg = get_algorithm(algorithm, {})
    keys = alg.adapted_keys(params)
    fast, rates = adapt(conv4.forward, params, keys, task.xs, task.ys, rule, meta, steps, first_order=False)
    query = alg.task_result(params, meta, rule, task, steps, training=True).query_loss
    return fast, rates, query


def init_meta(rule, algorithm: str, params, steps: int = STEPS):
    keys = get_algorithm(algorithm, {}).adapted_keys(params)
    return rule.init_meta({k: params[k] for k in keys}, steps)


@pytest.mark.parametrize("algorithm", ["maml", "anil"])
@pytest.mark.parametrize("name", LEARNED)
def test_meta_gradient_wrt_the_rules_own_parameters_matches_finite_differences(float64, name, algorithm):
    params, task = tiny_params(), tiny_task()
    rule = make_rule(name, rules_config())
    gen = torch.Generator().manual_seed(3)
    # Away from the symmetric starting point, so every entry matters.
    meta = {k: (v + 0.05 * torch.randn(v.shape, generator=gen, dtype=v.dtype)).requires_grad_(True)
            for k, v in init_meta(rule, algorithm, params).items()}
    loss = get_algorithm(algorithm, {}).task_result(params, meta, rule, task, STEPS, training=True).query_loss
    grads = dict(zip(meta, torch.autograd.grad(loss, list(meta.values()))))
    assert sum(g.norm() for g in grads.values()) > 1e-6
    eps = 1e-6
    for _ in range(2):
        direction = {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in meta.items()}
        with torch.no_grad():
            losses = [get_algorithm(algorithm, {}).task_result(params, {k: v + sign * eps * direction[k] for k, v in meta.items()},
                                                        rule, task, STEPS, training=True).query_loss
                      for sign in (1, -1)]
        numeric = (losses[0] - losses[1]) / (2 * eps)
        analytic = sum((grads[k] * direction[k]).sum() for k in meta)
        assert torch.isclose(analytic, numeric, rtol=1e-5, atol=1e-9), (analytic, numeric)


@pytest.mark.parametrize("name", ["hypergradient", "metaoptimize"])
def test_online_rules_second_order_meta_gradient_matches_finite_differences(float64, name):
    """Their rates depend on the inner gradients, so MAML's meta-gradient also flows through the rates."""
    params, task = tiny_params(), tiny_task()
    rule = make_rule(name, rules_config(hypergradient={"beta": 0.05}, metaoptimize={"meta_lr": 0.5}))
    maml = get_algorithm("maml", {})
    loss = maml.task_result(params, {}, rule, task, 3, training=True).query_loss
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    gen, eps = torch.Generator().manual_seed(5), 1e-6
    direction = {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in params.items()}
    with torch.no_grad():
        losses = [maml.task_result({k: v + sign * eps * direction[k] for k, v in params.items()}, {}, rule, task, 3,
                                   training=True).query_loss for sign in (1, -1)]
    analytic = sum((grads[k] * direction[k]).sum() for k in params)
    assert torch.isclose(analytic, (losses[0] - losses[1]) / (2 * eps), rtol=1e-5, atol=1e-9)


def assert_same_adaptation(algorithm: str, rule, meta, expected_rate: float = LR):
    params, task = tiny_params(), tiny_task()
    fixed = make_rule("fixed", rules_config())
    fast, rates, query = adapted(algorithm, params, meta(rule, algorithm, params), rule, task)
    ref_fast, ref_rates, ref_query = adapted(algorithm, params, {}, fixed, task)
    for key in ref_fast:
        assert torch.equal(fast[key], ref_fast[key]), key
    assert torch.equal(query, ref_query)
    torch.testing.assert_close(rates, torch.full_like(rates, expected_rate), rtol=1e-12, atol=0)


@pytest.mark.parametrize("algorithm", ["maml", "anil"])
def test_meta_sgd_with_rates_at_their_initial_value_is_the_fixed_rule(float64, algorithm):
    assert_same_adaptation(algorithm, make_rule("meta-sgd", rules_config()), init_meta)


def test_meta_sgd_rates_have_the_shapes_of_the_adapted_parameters():
    params = tiny_params()
    rule = make_rule("meta-sgd", rules_config())
    anil = init_meta(rule, "anil", params)
    assert {k: v.shape for k, v in anil.items()} == {f"lr.{k}": params[k].shape for k in conv4.head_keys(params)}
    assert len(init_meta(rule, "maml", params)) == len(params)


def test_meta_sgd_logs_the_element_weighted_mean_rate(float64):
    rule = make_rule("meta-sgd", rules_config())
    params = {"a": torch.zeros(3), "b": torch.zeros(1)}
    meta = {"lr.a": torch.full((3,), 0.1), "lr.b": torch.full((1,), 0.5)}
    grads = {"a": torch.ones(3), "b": torch.ones(1)}
    new, rate, _ = inner_update(rule, meta, params, grads, 0, None, {})
    assert rate.item() == pytest.approx((3 * 0.1 + 0.5) / 4)
    torch.testing.assert_close(new["a"], torch.full((3,), -0.1))


@pytest.mark.parametrize("algorithm", ["maml", "anil"])
def test_lslr_with_rates_at_their_initial_value_is_the_fixed_rule(float64, algorithm):
    assert_same_adaptation(algorithm, make_rule("lslr", rules_config()), init_meta)


def test_lslr_uses_each_steps_rate_and_the_last_one_beyond_the_trained_steps(float64):
    rule = make_rule("lslr", rules_config())
    params = {"a": torch.zeros(2), "b": torch.zeros(2)}
    meta = {"lr.a": torch.tensor([0.1, 0.2]), "lr.b": torch.tensor([0.3, 0.4])}
    grads = {"a": torch.ones(2), "b": torch.ones(2)}
    for step, expected in ((0, (0.1, 0.3)), (1, (0.2, 0.4)), (5, (0.2, 0.4))):
        new, rate, _ = inner_update(rule, meta, params, grads, step, None, {})
        assert (new["a"][0].item(), new["b"][0].item()) == pytest.approx((-expected[0], -expected[1]))
        assert rate.item() == pytest.approx(sum(expected) / 2)


@pytest.mark.parametrize("algorithm", ["maml", "anil"])
def test_hypergradient_with_beta_zero_is_the_fixed_rule(float64, algorithm):
    assert_same_adaptation(algorithm, make_rule("hypergradient", rules_config(hypergradient={"beta": 0.0})), init_meta)


def test_hypergradient_moves_the_rate_by_beta_times_the_gradient_alignment(float64):
    params, task = tiny_params(), tiny_task()
    beta = 0.05
    rule = make_rule("hypergradient", rules_config(hypergradient={"beta": beta}))
    _, rates, _ = adapted("maml", params, {}, rule, task, steps=3)
    # Reference: SGD-HD written out with autograd, independently of the rule's state handling.
    fast, rate, previous, expected = dict(params), LR, None, []
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(conv4.forward(fast, task.xs), task.ys)
        grads = dict(zip(fast, torch.autograd.grad(loss, list(fast.values()))))
        if previous is not None:
            rate = rate + beta * sum((grads[k] * previous[k]).sum() for k in grads)
        expected.append(float(rate))
        fast = {k: (v - rate * grads[k]).detach().requires_grad_(True) for k, v in fast.items()}
        previous = grads
    torch.testing.assert_close(rates, torch.tensor(expected), rtol=1e-10, atol=1e-12)
    assert rates[1] != rates[0] and rates[2] != rates[1]


@pytest.mark.parametrize("variant", ["scalar", "blockwise"])
@pytest.mark.parametrize("algorithm", ["maml", "anil"])
def test_metaoptimize_with_meta_step_size_zero_is_the_fixed_rule(float64, algorithm, variant):
    settings = rules_config(metaoptimize={"meta_lr": 0.0, "variant": variant})
    assert_same_adaptation(algorithm, make_rule("metaoptimize", settings), init_meta)


def metaoptimize_steps(variant: str, grads_per_step: list[dict], eta=0.5, decay=0.5):
    rule = make_rule("metaoptimize", rules_config(metaoptimize={"meta_lr": eta, "trace_decay": decay,
                                                                "variant": variant}))
    params, state, rates = {k: torch.zeros(1) for k in grads_per_step[0]}, {}, []
    for step, grads in enumerate(grads_per_step):
        params, rate, state = inner_update(rule, {}, params, grads, step, SupportState(None, None, torch.zeros(())), state)
        rates.append(rate.item())
    return params, rates, state


def test_metaoptimize_follows_its_trace_update_by_hand(float64):
    eta, decay, g = 0.5, 0.5, [1.0, 2.0, -1.0]
    # By hand: δ0 = 0; Δ0 = -α g0; h = Δ0. δ1 = -η g1 h; Δ1 = -α e^δ1 g1; h = γ h + Δ1. δ2 = δ1 - η g2 h.
    d0 = -LR * g[0]
    d1_log = -eta * g[1] * d0
    d1 = -LR * np.exp(d1_log) * g[1]
    d2_log = d1_log - eta * g[2] * (decay * d0 + d1)
    _, rates, _ = metaoptimize_steps("scalar", [{"w": torch.tensor([v])} for v in g], eta, decay)
    assert rates == pytest.approx([LR, LR * np.exp(d1_log), LR * np.exp(d2_log)], rel=1e-12)


def test_metaoptimize_grows_aligned_steps_and_shrinks_zigzagging_ones_per_block(float64):
    grads = [{"steady": torch.ones(1), "zigzag": torch.ones(3)}, {"steady": torch.ones(1), "zigzag": -torch.ones(3)}]
    _, _, state = metaoptimize_steps("blockwise", grads)
    assert state["log_ratio.steady"] > 0 > state["log_ratio.zigzag"]
    _, rates, state = metaoptimize_steps("scalar", grads)
    assert set(k for k in state if k.startswith("log_ratio.")) == {"log_ratio.all"}
    # scalar: one step size for the summed correlation, -α (steady) + 3α (zig-zag) > 0, so it shrinks
    assert rates[1] < rates[0]


@pytest.mark.parametrize("algorithm", ["maml", "anil"])
def test_alfa_at_its_start_multiplier_one_and_no_decay_is_the_fixed_rule(float64, algorithm):
    assert_same_adaptation(algorithm, make_rule("alfa", rules_config()), init_meta)


def test_alfa_applies_the_networks_rates_and_decay_per_layer(float64):
    rule = make_rule("alfa", rules_config())
    params = {"a": torch.full((3,), 2.0), "b": torch.full((1,), -1.0)}
    grads = {"a": torch.full((3,), 0.5), "b": torch.full((1,), 1.0)}
    meta = rule.init_meta(params, 2)
    # Last layer: bias only, so the multipliers are (a_a, a_b, b_a, b_b) = (2, 3, 0.5, 1).
    meta["net.2.bias"] = torch.tensor([2.0, 3.0, 0.5, 1.0])
    meta["beta"] = torch.tensor([[1.0, 1.0], [0.8, 0.9]])
    new, rate, _ = inner_update(rule, meta, params, grads, 1, None, {})
    torch.testing.assert_close(new["a"], 0.8 * 0.5 * params["a"] - 2 * LR * grads["a"])
    torch.testing.assert_close(new["b"], 0.9 * 1.0 * params["b"] - 3 * LR * grads["b"])
    assert rate.item() == pytest.approx((3 * 2 * LR + 3 * LR) / 4)
    # The network sees the layer statistics: with a live last layer the multipliers depend on them.
    # Layer b's update changes when only layer a's weights do: through the statistics τ.
    meta["net.2.weight"] = torch.ones(4, 4)
    live, _, _ = inner_update(rule, meta, params, grads, 1, None, {})
    shifted, _, _ = inner_update(rule, meta, {**params, "a": params["a"] + 1}, grads, 1, None, {})
    assert not torch.allclose(live["b"], shifted["b"])


@pytest.fixture(scope="module")
def task_list(data_dir, tmp_path_factory):  # noqa: F811
    split = load_split(data_dir, "test")
    tasks = make_task_list(split, dataset="glyphs", split_name="test", ways=3, shots=1, queries=3, tasks=6, seed=1,
                           split_sha256={})
    path = tmp_path_factory.mktemp("tasks") / "tasks.json"
    io.write_json(path, tasks)
    return path


@pytest.mark.parametrize("name", NEW_RULES)
def test_rule_trains_end_to_end_and_its_learned_state_is_used_at_evaluation(data_dir, task_list, tmp_path, name):  # noqa: F811
    cfg = tiny_config(iterations=3)
    cfg["evaluate"]["tasks"] = 6
    run = Run("glyphs", 3, 1, "maml", name, 1)
    train(cfg, run, data_dir, tmp_path / "model", tmp_path / "ckpt", progress=False)
    model = torch.load(tmp_path / "model" / "model.pt", weights_only=False)
    lambdas = np.load(tmp_path / "model" / "lambdas.npy")
    assert np.all(np.isfinite(lambdas)) and lambdas.shape == (3, cfg["train"]["task_batch"], 2)
    metrics = evaluate(cfg, run, tmp_path / "model" / "model.pt", task_list, data_dir, tmp_path / "m.json",
                       progress=False)
    # ALFA is evaluated with its training steps (evaluate.rules_at_train_steps), every other rule with evaluate's.
    assert cfg["evaluate"]["rules_at_train_steps"] == ["alfa"] and cfg["train"]["inner_steps"] != cfg["evaluate"]["inner_steps"]
    steps = cfg["train"]["inner_steps"] if name == "alfa" else cfg["evaluate"]["inner_steps"]
    assert metrics["inner_steps"] == steps and len(metrics["lambda"]["mean_per_step"]) == steps
    rule = make_rule(name, cfg["rules"])
    start = init_meta(rule, "maml", model["params"], cfg["train"]["inner_steps"])
    assert set(model["meta"]) == set(start)
    if not start:
        return
    # Learned: the saved rates moved away from their start; used: evaluating with the start differs.
    assert any(not torch.equal(model["meta"][k], start[k]) for k in start)
    torch.save({**model, "meta": start}, tmp_path / "start.pt")
    at_start = evaluate(cfg, run, tmp_path / "start.pt", task_list, data_dir, tmp_path / "s.json", progress=False)
    assert at_start["lambda"] != metrics["lambda"]


def test_a_rule_listed_in_rules_at_train_steps_is_evaluated_with_the_training_steps(data_dir, task_list, tmp_path):  # noqa: F811
    cfg = tiny_config(iterations=1)
    cfg["evaluate"]["tasks"] = 6
    run = Run("glyphs", 3, 1, "maml", "fixed", 1)
    train(cfg, run, data_dir, tmp_path / "model", tmp_path / "ckpt", progress=False)
    steps = {}
    for listed in ([], ["fixed"]):
        cfg["evaluate"]["rules_at_train_steps"] = listed
        metrics = evaluate(cfg, run, tmp_path / "model" / "model.pt", task_list, data_dir, tmp_path / "m.json",
                           progress=False)
        steps[tuple(listed)] = (metrics["inner_steps"], len(metrics["lambda"]["mean_per_step"]))
    assert steps == {(): (cfg["evaluate"]["inner_steps"],) * 2, ("fixed",): (cfg["train"]["inner_steps"],) * 2}
