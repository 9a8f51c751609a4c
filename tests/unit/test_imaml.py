"""iMAML: the conjugate-gradient implicit gradient against the exact one, the proximal inner loop, a run."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metalr.algorithms import get_algorithm
from metalr.algorithms.imaml import implicit_gradient
from metalr.algorithms.inner import adapt
from metalr.config import Run
from metalr.steprules import make_rule
from metalr.train.loop import init_model, train
from tests.unit.helpers import CONV4, tiny_params, tiny_task
from tests.unit.test_train import data_dir, tiny_config  # noqa: F401  (data_dir is a fixture)


@pytest.mark.parametrize("lam", [0.5, 2.0])
def test_implicit_gradient_is_exact_on_a_convex_quadratic_inner_problem(float64, lam):
    """Inner: L_s(φ) = ½ φᵀAφ - bᵀφ + λ/2 ||φ - θ||², solved in closed form; query: ½ ||φ - c||²."""
    gen = torch.Generator().manual_seed(0)
    n = 6
    m = torch.randn(n, n, generator=gen)
    a = m @ m.T + 0.1 * torch.eye(n)
    b, c = torch.randn(n, generator=gen), torch.randn(n, generator=gen)
    theta = torch.randn(n, generator=gen, requires_grad=True)
    solution = torch.linalg.solve(a + lam * torch.eye(n), b + lam * theta)  # φ*(θ)
    query = 0.5 * ((solution - c) ** 2).sum()
    (exact,) = torch.autograd.grad(query, theta)  # the MAML-style gradient through the exact solution
    support = lambda p: 0.5 * p["w"] @ a @ p["w"] - b @ p["w"]  # noqa: E731
    ours = implicit_gradient(support, {"w": solution.detach()}, {"w": (solution - c).detach()}, lam, cg_steps=n)
    torch.testing.assert_close(ours["w"], exact, rtol=1e-9, atol=1e-11)
    # Negative control: too few CG steps do not reach it.
    short = implicit_gradient(support, {"w": solution.detach()}, {"w": (solution - c).detach()}, lam, cg_steps=1)
    assert not torch.allclose(short["w"], exact, rtol=1e-6)


def test_proximal_inner_loop_descends_the_regularised_loss(float64):
    params, task, lam, lr = tiny_params(), tiny_task(), 0.7, 0.3
    rule = make_rule("fixed", {"fixed": {"lr": lr}})
    ours, _ = adapt(CONV4.forward, params, list(params), task.xs, task.ys, rule, {}, 3, first_order=True, proximal=lam)
    fast = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    for _ in range(3):
        loss = F.cross_entropy(CONV4.forward(fast, task.xs), task.ys)
        loss = loss + lam / 2 * sum(((fast[k] - params[k].detach()) ** 2).sum() for k in fast)
        grads = torch.autograd.grad(loss, list(fast.values()))
        fast = {k: (v - lr * g).detach().requires_grad_(True) for (k, v), g in zip(fast.items(), grads)}
    for key in params:
        torch.testing.assert_close(ours[key].detach(), fast[key].detach(), rtol=1e-10, atol=1e-12)


def test_imaml_meta_gradient_is_the_implicit_gradient_at_the_adapted_parameters(float64):
    params, task = tiny_params(), tiny_task()
    imaml = get_algorithm("imaml", {"imaml": {"lam": 1.0, "cg_steps": 3}}, CONV4)
    assert (imaml.lam, imaml.cg_steps) == (1.0, 3)
    rule = make_rule("fixed", {"fixed": {"lr": 0.3}})
    result = imaml.task_result(params, {}, rule, task, 2, training=True)
    ours = dict(zip(params, torch.autograd.grad(result.meta_objective, list(params.values()))))
    solution, _ = adapt(CONV4.forward, params, list(params), task.xs, task.ys, rule, {}, 2, True, proximal=1.0)
    solution = {k: v.detach().requires_grad_(True) for k, v in solution.items()}
    query = F.cross_entropy(CONV4.forward(solution, task.xq), task.yq)
    query_grad = dict(zip(solution, torch.autograd.grad(query, list(solution.values()))))
    expected = implicit_gradient(lambda p: F.cross_entropy(CONV4.forward(p, task.xs), task.ys), solution, query_grad,
                                 1.0, 3)
    for key in params:
        torch.testing.assert_close(ours[key], expected[key], rtol=1e-10, atol=1e-12)
    # The implicit gradient is not the first-order one: the Hessian term matters.
    assert max((ours[k] - query_grad[k]).norm() for k in params) > 1e-6
    torch.testing.assert_close(result.query_loss, query.detach())


def test_imaml_trains_end_to_end(data_dir, tmp_path):  # noqa: F811
    cfg = tiny_config(iterations=2, outer_lr=0.01)
    run = Run("glyphs", 3, 1, "imaml", "fixed", 1)
    train(cfg, run, data_dir, tmp_path / "model", tmp_path / "ckpt", progress=False)
    model = torch.load(tmp_path / "model" / "model.pt", weights_only=True)
    start = init_model(cfg, run, model["image_shape"])
    assert not torch.equal(model["params"]["head.weight"], start["head.weight"])
    assert model["config"]["algorithms.imaml"] == cfg["algorithms"]["imaml"]
