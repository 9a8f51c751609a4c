"""Fast paths: batched (vmap) training and chunked evaluation equal the per-task paths; precision options."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from metalr import config as config_mod
from metalr import precision
from metalr.algorithms import ALGORITHMS, get_algorithm
from metalr.algorithms.meta_batch import accumulate_meta_gradient, uses_vmap
from metalr.config import Run
from metalr.evaluate.chunked import chunk_for_budget, resolve_chunk, score_tasks
from metalr.steprules import RULES, make_rule
from metalr.train.loop import train
from tests.unit.helpers import tiny_params, tiny_task

SETTINGS = config_mod.load([config_mod.DEFAULT_CONFIG])["rules"]
PAIRS = [(a, r) for a in ALGORITHMS for r in RULES if ALGORITHMS[a].flag("trains_rule_meta") or not RULES[r].flag("learned")]
BATCHABLE = [(a, r) for a, r in PAIRS if ALGORITHMS[a].flag("batches_training")]


def one_iteration(algorithm: str, rule_name: str, vmap: bool):
    """Meta-gradient of one batch of 3 tasks, then one SGD step, in float64. (Not Adam: it scales the conv
    biases' meta-gradients, exactly 0 in truth and ~1e-17 of rounding here, up to full steps.)"""
    algo, rule = get_algorithm(algorithm, {}), make_rule(rule_name, SETTINGS)
    params = tiny_params()
    meta = {k: v.requires_grad_(True) for k, v in
            rule.init_meta({k: params[k] for k in algo.adapted_keys(params)}, 3).items()}
    tasks = [tiny_task(seed=s) for s in range(3)]
    batch = accumulate_meta_gradient(algo, params, meta, rule, tasks, 3, vmap)
    trainable = {**params, **{f"rule.{k}": v for k, v in meta.items()}}
    grads = {k: v.grad.clone() for k, v in trainable.items() if v.grad is not None}
    torch.optim.SGD(trainable.values(), lr=0.1).step()
    return batch, grads, {k: v.detach() for k, v in trainable.items()}


@pytest.mark.parametrize("algorithm,rule", BATCHABLE)
def test_vmap_training_step_equals_the_loop_in_float64(float64, algorithm, rule):
    loop, loop_grads, loop_params = one_iteration(algorithm, rule, vmap=False)
    batched, batched_grads, batched_params = one_iteration(algorithm, rule, vmap=True)
    assert batched.query_loss == pytest.approx(loop.query_loss, rel=1e-12)
    assert batched.query_accuracy == loop.query_accuracy
    np.testing.assert_allclose(batched.rates, loop.rates, rtol=1e-12)
    assert batched_grads.keys() == loop_grads.keys() and loop_grads
    for key in loop_grads:
        torch.testing.assert_close(batched_grads[key], loop_grads[key], rtol=1e-9, atol=1e-13, msg=key)
        torch.testing.assert_close(batched_params[key], loop_params[key], rtol=1e-12, atol=1e-13, msg=key)


def test_the_comparison_sees_a_wrong_batched_gradient(float64):
    """Negative control: a batched step that drops one task differs from the loop."""
    _, loop_grads, _ = one_iteration("maml", "fixed", vmap=False)
    algo, rule = get_algorithm("maml", {}), make_rule("fixed", SETTINGS)
    params = tiny_params()
    accumulate_meta_gradient(algo, params, {}, rule, [tiny_task(seed=s) for s in range(2)], 3, vmap=True)
    assert not torch.allclose(params["head.weight"].grad, loop_grads["head.weight"], rtol=1e-6)


def test_batching_choice_and_its_fallback():
    imaml, maml = get_algorithm("imaml", {}), get_algorithm("maml", {})
    assert not uses_vmap("auto", "cpu", maml) and uses_vmap("auto", "cuda", maml)
    assert uses_vmap("vmap", "cpu", maml) and not uses_vmap("loop", "cuda", maml)
    notices = []
    assert not uses_vmap("auto", "cuda", imaml, notices.append)
    assert len(notices) == 1 and "imaml" in notices[0] and "per-task loop" in notices[0]
    with pytest.raises(ValueError, match="cannot batch"):
        uses_vmap("vmap", "cpu", imaml)


def test_forced_vmap_with_imaml_is_refused_at_validation():
    cfg = config_mod.load([config_mod.DEFAULT_CONFIG])
    cfg["grid"]["algorithms"] = ["maml", "imaml"]
    cfg["compute"]["batching"] = "vmap"
    with pytest.raises(config_mod.ConfigError, match=r"compute.batching.*'imaml' \(grid.algorithms\[1\]\)"):
        config_mod.validate(cfg)
    cfg["compute"]["batching"] = "auto"
    config_mod.validate(cfg)


def test_train_runs_the_vmap_path_end_to_end(blobs_root, tmp_path):
    """The loop wiring: float32 training with vmap stays close to the loop (1 inner step keeps float32 tight)."""
    cfg = config_mod.load([config_mod.DEFAULT_CONFIG])
    cfg["model"]["filters"] = 4
    cfg["train"].update({"iterations": 3, "inner_steps": 1, "queries": 2, "log_every": 1, "checkpoint_every": 10})
    logs = {}
    for batching in ("loop", "vmap"):
        run_cfg = copy.deepcopy(cfg)
        run_cfg["compute"]["batching"] = batching
        logs[batching] = train(run_cfg, Run("glyphs", 3, 1, "maml", "mlplr", 1), blobs_root / "glyphs",
                               tmp_path / batching, tmp_path / f"{batching}.ckpt", progress=False)
    np.testing.assert_allclose(logs["vmap"]["query_loss"], logs["loop"]["query_loss"], rtol=1e-4)
    lambdas = {b: np.load(tmp_path / b / "lambdas.npy") for b in logs}
    np.testing.assert_allclose(lambdas["vmap"], lambdas["loop"], rtol=1e-5)
    assert lambdas["loop"].std() > 0  # MLPLR's rates vary per task: a mix-up of tasks would show


@pytest.mark.parametrize("algorithm,rule", [("maml", "mlplr"), ("anil", "hypergradient"), ("imaml", "fixed"),
                                            ("reptile", "metaoptimize"), ("fomaml", "lslr")])
def test_chunked_evaluation_equals_the_per_task_path_in_float64(float64, algorithm, rule):
    algo, step_rule = get_algorithm(algorithm, {}), make_rule(rule, SETTINGS)
    params = {k: v.detach() for k, v in tiny_params().items()}
    meta = step_rule.init_meta({k: params[k] for k in algo.adapted_keys(params)}, 3)
    tasks = [tiny_task(seed=s) for s in range(7)]
    per_task = list(score_tasks(algo, params, meta, step_rule, tasks, 4, chunk=1))
    chunked = list(score_tasks(algo, params, meta, step_rule, iter(tasks), 4, chunk=3))  # chunks of 3, 3, 1
    assert [s.accuracy for s in chunked] == [s.accuracy for s in per_task]
    np.testing.assert_array_equal(np.stack([s.class_accuracy for s in chunked]),
                                  np.stack([s.class_accuracy for s in per_task]))
    np.testing.assert_allclose(np.stack([s.rates for s in chunked]), np.stack([s.rates for s in per_task]), rtol=1e-12)
    assert len({s.accuracy for s in per_task}) > 1  # the tasks differ, so order mix-ups would show
    # each task's accuracy is the mean of its classes' (every class has the same number of queries)
    np.testing.assert_allclose([s.class_accuracy.mean() for s in per_task], [s.accuracy for s in per_task], atol=1e-12)


def test_evaluation_chunk_setting():
    assert resolve_chunk({"task_chunk": 8, "chunk_memory_mib": 1}, "cpu", lambda: 1 / 0) == 8
    assert resolve_chunk({"task_chunk": "auto", "chunk_memory_mib": 4096}, "cpu", lambda: 1 / 0) == 1
    assert chunk_for_budget(300.0, 4096) == 13
    assert chunk_for_budget(9000.0, 4096) == 1


def test_tf32_switches_and_bf16_autocast():
    before = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
    try:
        precision.configure({"tf32": True})
        assert (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision) == ("tf32",) * 2
        precision.configure({"tf32": False})
        assert (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision) == ("ieee",) * 2
    finally:
        torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = before
    with precision.forward_context({"autocast": "none"}, "cpu")():
        assert not torch.is_autocast_enabled("cpu")
    with precision.forward_context({"autocast": "bf16"}, "cpu")():
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16


@pytest.mark.parametrize("vmap", [False, True])
def test_a_bf16_training_step_runs_and_differs_from_float32(vmap):
    algo, rule = get_algorithm("maml", {}), make_rule("mlplr", SETTINGS)
    tasks = [tiny_task(seed=s) for s in range(2)]
    tasks = [type(t)(t.xs.float(), t.ys, t.xq.float(), t.yq) for t in tasks]
    grads = {}
    for mode in ("none", "bf16"):
        params = {k: v.detach().float().requires_grad_(True) for k, v in tiny_params().items()}
        batch = accumulate_meta_gradient(algo, params, {}, rule, tasks, 2, vmap,
                                         precision.forward_context({"autocast": mode}, "cpu"))
        assert np.isfinite(batch.query_loss) and batch.rates.shape == (2, 2)
        grads[mode] = params["conv0.weight"].grad
        assert grads[mode].dtype == torch.float32 and torch.isfinite(grads[mode]).all()
    assert not torch.equal(grads["none"], grads["bf16"])
