"""Conv-4's CPU kernels (models/conv4.py) compute exactly the functions they replace."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metalr.models import conv4


def second_order(pool, x: torch.Tensor, direction: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Values, gradient and a Hessian-vector product of a smooth function of the pooled tensor."""
    out = pool(x)
    loss = (out.tanh() * torch.linspace(-1, 1, out.numel(), dtype=x.dtype).view_as(out)).sum()
    (grad,) = torch.autograd.grad(loss, x, create_graph=True)
    (hvp,) = torch.autograd.grad((grad * direction).sum(), x)
    return out, grad, hvp


@pytest.mark.parametrize("shape", [(3, 4, 8, 8), (2, 3, 21, 21), (1, 2, 5, 7), (2, 3, 2, 2)])
def test_cpu_max_pool_equals_torch_max_pool_through_second_order(float64, shape):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    direction = torch.randn(shape, generator=gen, dtype=torch.float64)
    ours = second_order(conv4.max_pool_2x2, x, direction)
    reference = second_order(lambda t: F.max_pool2d(t, 2), x, direction)
    for got, expected in zip(ours, reference):
        assert torch.equal(got, expected)  # bit for bit: the same elements are selected and routed


def test_the_vmap_form_is_the_same_function_with_the_same_meta_gradient(float64):
    gen = torch.Generator().manual_seed(1)
    params = {k: v.requires_grad_(True) for k, v in conv4.init(gen, 3, 16, 5, 4, torch.float64).items()}
    for key in params:  # BN weights and biases away from 1 and 0, so the affine part matters
        if key.startswith("bn"):
            params[key].data.add_(torch.randn(params[key].shape, generator=gen, dtype=torch.float64))
    x = torch.randn(6, 3, 16, 16, generator=gen, dtype=torch.float64)

    def loss_and_grads():
        loss = conv4.forward(params, x).logsumexp(-1).sum()
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        second = torch.autograd.grad(sum((g ** 2).sum() for g in grads), list(params.values()))
        return (loss, *grads, *second)

    fused = loss_and_grads()
    with conv4.under_vmap():
        by_hand = loss_and_grads()
    for got, expected in zip(fused, by_hand):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
