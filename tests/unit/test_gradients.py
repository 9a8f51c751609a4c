"""Meta-gradients of MAML, FOMAML and ANIL against finite differences and independent references."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metalr.algorithms import get_algorithm
from metalr.models.conv4 import BLOCKS
from metalr.steprules import make_rule
from tests.unit.helpers import CONV4, tiny_params, tiny_task

LR = 0.3
RULES = {"fixed": {"lr": LR}, "mlplr": {"lr_max": 2.0, "lr_min": 0.05, "grad_through_lr": False,
                                        "divergence": "kl_label_pred"}}


def meta_loss(algorithm: str, params, task, steps: int, rule: str = "fixed") -> torch.Tensor:
    rule = make_rule(rule, RULES)
    return get_algorithm(algorithm, {}, CONV4).task_result(params, {}, rule, task, steps, training=True).query_loss


def meta_grad(algorithm: str, params, task, steps: int, rule: str = "fixed") -> dict[str, torch.Tensor]:
    loss = meta_loss(algorithm, params, task, steps, rule)
    return dict(zip(params, torch.autograd.grad(loss, list(params.values()))))


def reference_maml_grad(params, task, steps: int, first_order: bool, head_only: bool = False):
    """The clone/adapt pattern of learn2learn, written with torch.autograd.grad (no torch.func)."""
    keys = CONV4.head_keys(params) if head_only else list(params)
    fast = dict(params)
    for _ in range(steps):
        loss = F.cross_entropy(CONV4.forward(fast, task.xs), task.ys)
        grads = torch.autograd.grad(loss, [fast[k] for k in keys], create_graph=not first_order)
        fast = {**fast, **{k: fast[k] - LR * g for k, g in zip(keys, grads)}}
    query = F.cross_entropy(CONV4.forward(fast, task.xq), task.yq)
    return dict(zip(params, torch.autograd.grad(query, list(params.values()), allow_unused=True)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_maml_meta_gradient_matches_central_finite_differences(float64, seed):
    params, task = tiny_params(seed=seed), tiny_task(seed=seed + 10)
    steps = 3
    grads = meta_grad("maml", params, task, steps)
    gen = torch.Generator().manual_seed(seed + 100)
    eps = 1e-6
    for _ in range(3):
        direction = {k: torch.randn(v.shape, generator=gen, dtype=torch.float64) for k, v in params.items()}
        with torch.no_grad():
            plus = {k: v + eps * direction[k] for k, v in params.items()}
            minus = {k: v - eps * direction[k] for k, v in params.items()}
        numeric = (meta_loss("maml", plus, task, steps) - meta_loss("maml", minus, task, steps)) / (2 * eps)
        analytic = sum((grads[k] * direction[k]).sum() for k in params)
        assert torch.isclose(analytic, numeric.detach(), rtol=1e-5, atol=1e-8), (analytic, numeric)


def test_fd_check_catches_a_first_order_gradient(float64):
    """Negative control: FOMAML's gradient is not MAML's, so the finite-difference check must reject it."""
    params, task = tiny_params(), tiny_task()
    fo = meta_grad("fomaml", params, task, 3)
    so = meta_grad("maml", params, task, 3)
    rel = max(((fo[k] - so[k]).norm() / so[k].norm().clamp_min(1e-12)).item() for k in params if "head" in k)
    assert rel > 1e-3


@pytest.mark.parametrize("algorithm,first_order,head_only", [
    ("maml", False, False), ("fomaml", True, False), ("anil", False, True)])
def test_meta_gradient_equals_handwritten_reference(float64, algorithm, first_order, head_only):
    params, task = tiny_params(), tiny_task()
    ours = meta_grad(algorithm, params, task, 3)
    ref = reference_maml_grad(params, task, 3, first_order=first_order, head_only=head_only)
    for key in params:
        expected = ref[key] if ref[key] is not None else torch.zeros_like(params[key])
        torch.testing.assert_close(ours[key], expected, rtol=1e-10, atol=1e-12, msg=key)


def test_fomaml_gradient_is_query_gradient_at_adapted_params(float64):
    """FOMAML's meta-gradient is, by definition, the query-loss gradient at the adapted parameters."""
    params, task = tiny_params(), tiny_task()
    fast = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    for _ in range(2):
        loss = F.cross_entropy(CONV4.forward(fast, task.xs), task.ys)
        grads = torch.autograd.grad(loss, list(fast.values()))
        fast = {k: (v - LR * g).detach().requires_grad_(True) for (k, v), g in zip(fast.items(), grads)}
    query = F.cross_entropy(CONV4.forward(fast, task.xq), task.yq)
    expected = dict(zip(fast, torch.autograd.grad(query, list(fast.values()))))
    ours = meta_grad("fomaml", params, task, 2)
    for key in params:
        torch.testing.assert_close(ours[key], expected[key], rtol=1e-10, atol=1e-12, msg=key)


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "anil"])
def test_conv_bias_meta_gradients_vanish_under_batch_norm(float64, algorithm):
    """BN with batch statistics cancels a constant conv bias, so its exact meta-gradient is 0."""
    params, task = tiny_params(), tiny_task()
    grads = meta_grad(algorithm, params, task, 3, rule="mlplr")
    for block in range(BLOCKS):
        assert grads[f"conv{block}.bias"].abs().max() < 1e-12
    assert grads["head.weight"].abs().max() > 1e-6


def test_inner_loop_changes_only_the_adapted_keys(float64):
    from metalr.algorithms.inner import adapt

    params, task = tiny_params(), tiny_task()
    head = CONV4.head_keys(params)
    adapted, rates = adapt(CONV4.forward, params, head, task.xs, task.ys, make_rule("fixed", RULES), {}, 3, False)
    for key in CONV4.feature_keys(params):
        assert adapted[key] is params[key]
    for key in head:
        assert not torch.equal(adapted[key], params[key])
    assert torch.equal(rates, torch.full((3,), LR, dtype=torch.float64))


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "anil"])
def test_adaptation_lowers_support_loss(float64, algorithm):
    params, task = tiny_params(), tiny_task()
    rule = make_rule("fixed", RULES)
    support_as_query = type(task)(task.xs, task.ys, task.xs, task.ys)
    before = F.cross_entropy(CONV4.forward(params, task.xs), task.ys)
    after = get_algorithm(algorithm, {}, CONV4).task_result(params, {}, rule, support_as_query, 5,
                                                             training=False).query_loss
    assert after < before
