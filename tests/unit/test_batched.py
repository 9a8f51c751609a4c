"""Batched tasks (vmap) against the per-task loop, and the vmap + affine BatchNorm pitfall."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metalr.algorithms import get_algorithm
from metalr.algorithms.batched import batched_task_results
from metalr.algorithms.inner import adapt
from metalr.models.conv4 import BLOCKS
from metalr.steprules import make_rule
from tests.unit.helpers import CONV4, tiny_params, tiny_task

RULES = {"fixed": {"lr": 0.3}, "mlplr": {"lr_max": 2.0, "lr_min": 0.05, "grad_through_lr": False,
                                         "divergence": "kl_label_pred"}}


def meta_grads(loss, params):
    return dict(zip(params, torch.autograd.grad(loss, list(params.values()))))


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "anil"])
@pytest.mark.parametrize("rule", ["fixed", "mlplr"])
def test_vmap_equals_the_per_task_loop_in_float64(float64, algorithm, rule):
    params = tiny_params()
    tasks = [tiny_task(seed=s) for s in range(3)]
    step_rule = make_rule(rule, RULES)
    loop = [get_algorithm(algorithm, {}, CONV4).task_result(params, {}, step_rule, t, 3, training=True) for t in tasks]
    batched = batched_task_results(get_algorithm(algorithm, {}, CONV4), params, {}, step_rule, tasks, 3, training=True)
    torch.testing.assert_close(batched.query_loss, torch.stack([r.query_loss for r in loop]), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(batched.rates, torch.stack([r.rates for r in loop]), rtol=1e-12, atol=1e-12)
    expected = meta_grads(torch.stack([r.query_loss for r in loop]).mean(), params)
    got = meta_grads(batched.query_loss.mean(), params)
    for key in params:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-9, atol=1e-12, msg=key)
    for block in range(BLOCKS):  # BN cancels the conv bias: its exact meta-gradient is 0
        assert got[f"conv{block}.bias"].abs().max() < 1e-12


def affine_bn_forward(params, x):
    """The tempting Conv-4: BatchNorm's affine part passed to F.batch_norm (wrong under vmap)."""
    for block in range(BLOCKS):
        x = F.conv2d(x, params[f"conv{block}.weight"], params[f"conv{block}.bias"], padding=1)
        x = F.batch_norm(x, None, None, params[f"bn{block}.weight"], params[f"bn{block}.bias"], training=True)
        x = F.max_pool2d(F.relu(x), 2)
    return CONV4.head(params, x.flatten(1))


def test_the_conv_bias_check_catches_affine_batch_norm_under_vmap(float64):
    """Negative control: the affine batch_norm's vmap batch rule drops second-order terms, so the
    conv-bias meta-gradient, exactly 0 in truth, is not; the loop over tasks stays exact."""
    params = tiny_params()
    tasks = [tiny_task(seed=s) for s in range(3)]
    rule = make_rule("fixed", RULES)

    def query_loss(xs, ys, xq, yq):
        adapted, _ = adapt(affine_bn_forward, params, list(params), xs, ys, rule, {}, 2, first_order=False)
        return F.cross_entropy(affine_bn_forward(adapted, xq), yq)

    stacked = [torch.stack([getattr(t, f) for t in tasks]) for f in ("xs", "ys", "xq", "yq")]
    vmapped = meta_grads(torch.func.vmap(query_loss)(*stacked).mean(), params)
    looped = meta_grads(torch.stack([query_loss(t.xs, t.ys, t.xq, t.yq) for t in tasks]).mean(), params)
    assert looped["conv1.bias"].abs().max() < 1e-12
    assert vmapped["conv1.bias"].abs().max() > 1e-10
