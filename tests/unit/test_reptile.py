"""Reptile: its meta-gradient is θ - W, and it trains end to end."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from metalr.algorithms import get_algorithm
from metalr.config import Run
from metalr.steprules import make_rule
from metalr.train.loop import init_model, train
from tests.unit.helpers import CONV4, tiny_params, tiny_task
from tests.unit.test_train import data_dir, tiny_config  # noqa: F401  (data_dir is a fixture)

LR = 0.3


def test_reptile_meta_gradient_is_the_initialisation_minus_the_adapted_parameters(float64):
    params, task = tiny_params(), tiny_task()
    reptile = get_algorithm("reptile", {}, CONV4)
    result = reptile.task_result(params, {}, make_rule("fixed", {"fixed": {"lr": LR}}), task, 3, training=True)
    ours = dict(zip(params, torch.autograd.grad(result.meta_objective, list(params.values()))))
    fast = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    for _ in range(3):  # plain SGD on the support set, independent of inner.adapt
        loss = F.cross_entropy(CONV4.forward(fast, task.xs), task.ys)
        grads = torch.autograd.grad(loss, list(fast.values()))
        fast = {k: (v - LR * g).detach().requires_grad_(True) for (k, v), g in zip(fast.items(), grads)}
    for key in params:
        torch.testing.assert_close(ours[key], params[key].detach() - fast[key].detach(), rtol=1e-10, atol=1e-12)
    expected_query = F.cross_entropy(CONV4.forward(fast, task.xq), task.yq)
    torch.testing.assert_close(result.query_loss, expected_query.detach(), rtol=1e-10, atol=1e-12)


def test_reptile_trains_end_to_end(data_dir, tmp_path):  # noqa: F811
    cfg = tiny_config(iterations=3, outer_lr=0.01)
    run = Run("glyphs", 3, 1, "reptile", "hypergradient", 1)
    train(cfg, run, data_dir, tmp_path / "model", tmp_path / "ckpt", progress=False)
    model = torch.load(tmp_path / "model" / "model.pt", weights_only=True)
    start = init_model(cfg, run, model["image_shape"])
    assert model["meta"] == {}
    assert all(not torch.equal(model["params"][k], start[k]) for k in ("head.weight", "conv0.weight"))
