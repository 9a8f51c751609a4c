"""Backbones (metalr.models): Conv-4 bit-identical to the code before the registry, ResNet-12 checked against
finite differences and an independent reference, vmap against the loop, and the shared CPU kernels."""
from __future__ import annotations

import hashlib
import math

import pytest
import torch
import torch.nn.functional as F

from metalr.algorithms import get_algorithm
from metalr.algorithms.batched import batched_task_results
from metalr.algorithms.inner import adapt
from metalr.analysis.fidelity import algorithm_meta_gradient, unrolled_meta_gradient
from metalr.models import BACKBONES, get_backbone, widths
from metalr.models.base import gathered_max_pool_2x2
from metalr.models.resnet12 import ResNet12
from metalr.steprules import make_rule
from tests.unit.helpers import CONV4, tiny_params, tiny_task

RESNET12 = get_backbone("resnet12")
RULE = make_rule("fixed", {"fixed": {"lr": 0.3}})


def digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key, value in tensors.items():
        h.update(key.encode())
        h.update(value.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def meta_grads(loss: torch.Tensor, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return dict(zip(params, torch.autograd.grad(loss, list(params.values()))))


def perturbed_params(backbone, seed: int = 1, filters: int = 4, channels: int = 3, ways: int = 5):
    """float64 parameters for 16x16 images, BN weights and biases away from 1 and 0 (so the affine part matters)."""
    gen = torch.Generator().manual_seed(seed)
    params = backbone.init(gen, channels, 16, ways, filters, torch.float64)
    for key in params:
        if "bn" in key:
            params[key] += torch.randn(params[key].shape, generator=gen, dtype=torch.float64) * 0.5
    return {k: v.requires_grad_(True) for k, v in params.items()}


# --------------------------------------------------------------------------- Conv-4: the bytes of main's code

# sha256 of Conv-4's initial parameters, recorded on main's code before the backbone registry (commit 6d6adee).
# Portable: the generator's draws and their casts do not depend on the CPU's kernels.
CONV4_INIT_SHA256 = {
    "float32, 3x32x32, 5-way, 8 filters": "549574f1b8d4fd9c42edcb96089f436e83c7bf3473bf35b1ce124891f0fe1ecf",
    "float64, 1x16x16, 3-way, 3 filters": "ed0f1093953fdb09058230b5be54eed7f86087d8380fd75d1e1ea8893e64fbf0",
}


def test_conv4_initial_parameters_keep_their_bytes():
    assert digest(CONV4.init(torch.Generator().manual_seed(0), 3, 32, 5, 8, torch.float32)) == \
        CONV4_INIT_SHA256["float32, 3x32x32, 5-way, 8 filters"]
    assert digest(tiny_params()) == CONV4_INIT_SHA256["float64, 1x16x16, 3-way, 3 filters"]


def test_the_init_pin_catches_a_changed_draw_order():
    """Negative control: the same draws in another order (the head first) give other bytes."""
    gen = torch.Generator().manual_seed(0)
    head_first = {"head.weight": torch.rand((3, 3), generator=gen, dtype=torch.float64), **tiny_params()}
    assert digest(head_first) != CONV4_INIT_SHA256["float64, 1x16x16, 3-way, 3 filters"]


def main_conv4_features(params, x, under_vmap=False):
    """models/conv4.py's features as they were on main before the registry (commit 6d6adee), kept verbatim in
    substance: the fused affine BatchNorm and the gathered CPU max-pool outside vmap, the by-hand affine
    and F.max_pool2d under it, ReLU after the pool."""
    for block in range(4):
        x = F.conv2d(x, params[f"conv{block}.weight"], params[f"conv{block}.bias"], padding=1)
        weight, bias = params[f"bn{block}.weight"], params[f"bn{block}.bias"]
        if under_vmap:
            x = F.batch_norm(x, None, None, training=True) * weight[:, None, None] + bias[:, None, None]
            x = F.max_pool2d(x, 2)
        else:
            x = F.batch_norm(x, None, None, weight, bias, training=True)
            with torch.no_grad():
                _, indices = torch.ops.aten.max_pool2d_with_indices(
                    x.detach().contiguous(memory_format=torch.channels_last), [2, 2], [2, 2])
            indices = indices.contiguous()
            x = x.flatten(-2).gather(-1, indices.flatten(-2)).view(indices.shape)
        x = F.relu(x)
    return x.flatten(1)


def main_head(params, feats):
    return F.linear(feats, params["head.weight"], params["head.bias"])


def main_conv4_forward(params, x, under_vmap=False):
    return main_head(params, main_conv4_features(params, x, under_vmap))


def main_query_loss(params, task, steps, under_vmap=False):
    """MAML's query loss through main's forward, as main's MAML computed it."""
    forward = lambda p, x: main_conv4_forward(p, x, under_vmap)  # noqa: E731
    adapted, _ = adapt(forward, params, list(params), task.xs, task.ys, RULE, {}, steps, first_order=False)
    return F.cross_entropy(forward(adapted, task.xq), task.yq)


def main_anil_query_loss(params, task, steps):
    """ANIL's query loss as main's ANIL computed it: features once, the head adapted on them."""
    head = {k: params[k] for k in ("head.weight", "head.bias")}
    support, query = main_conv4_features(params, task.xs), main_conv4_features(params, task.xq)
    adapted, _ = adapt(main_head, head, list(head), support, task.ys, RULE, {}, steps, first_order=False)
    return F.cross_entropy(main_head(adapted, query), task.yq)


def test_conv4_forward_and_meta_gradients_equal_mains_bit_for_bit(float64):
    params, tasks = perturbed_params(CONV4, filters=3, channels=1, ways=3), [tiny_task(seed=s) for s in range(3)]
    assert torch.equal(CONV4.forward(params, tasks[0].xs), main_conv4_forward(params, tasks[0].xs))
    for algorithm, main_loss in (("maml", main_query_loss), ("anil", main_anil_query_loss)):
        ours = get_algorithm(algorithm, {}, CONV4).task_result(params, {}, RULE, tasks[0], 3, training=True)
        expected = meta_grads(main_loss(params, tasks[0], 3), params)
        got = meta_grads(ours.query_loss, params)
        assert all(torch.equal(got[k], expected[k]) for k in params), algorithm
    batched = batched_task_results(get_algorithm("maml", {}, CONV4), params, {}, RULE, tasks, 3, training=True)
    stacked = [torch.stack([getattr(t, f) for t in tasks]) for f in ("xs", "ys", "xq", "yq")]

    def main_vmapped(xs, ys, xq, yq):
        return main_query_loss(params, type(tasks[0])(xs, ys, xq, yq), 3, under_vmap=True)

    expected = meta_grads(torch.func.vmap(main_vmapped)(*stacked).mean(), params)
    got = meta_grads(batched.query_loss.mean(), params)
    assert all(torch.equal(got[k], expected[k]) for k in params)


def test_the_bit_comparison_catches_the_other_batch_norm_form(float64):
    """Negative control: the by-hand affine BatchNorm is the same function, but not the same bits."""
    params = perturbed_params(CONV4, filters=3)
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ours, main = CONV4.for_vmap().forward(params, x), main_conv4_forward(params, x)
    torch.testing.assert_close(ours, main, rtol=1e-12, atol=1e-12)
    assert not torch.equal(ours, main)


# --------------------------------------------------------------------------- the shared kernels and the vmap form

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
    ours = second_order(gathered_max_pool_2x2, x, direction)
    reference = second_order(lambda t: F.max_pool2d(t, 2), x, direction)
    for got, expected in zip(ours, reference):
        assert torch.equal(got, expected)  # bit for bit: the same elements are selected and routed


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_the_vmap_form_is_the_same_function_with_the_same_second_order_gradients(float64, name):
    backbone = get_backbone(name)
    params = perturbed_params(backbone)
    x = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def loss_and_grads(form):
        loss = form.forward(params, x).logsumexp(-1).sum()
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        second = torch.autograd.grad(sum((g ** 2).sum() for g in grads), list(params.values()))
        return (loss, *grads, *second)

    for got, expected in zip(loss_and_grads(backbone.for_vmap()), loss_and_grads(backbone)):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_backbones_are_values_the_batched_path_can_swap():
    assert get_backbone("conv4") == CONV4 and CONV4.for_vmap() != CONV4 and CONV4.for_vmap().vmap_safe
    assert not CONV4.vmap_safe and type(CONV4.for_vmap()) is type(CONV4)


# --------------------------------------------------------------------------- ResNet-12

def test_resnet12_has_metaoptnets_widths_and_parameter_count():
    params = RESNET12.init(torch.Generator().manual_seed(0), 3, 84, 5, 64)
    assert widths("resnet12", 64) == [64, 160, 320, 640]
    assert [params[f"block{b}.conv2.weight"].shape[0] for b in range(4)] == [64, 160, 320, 640]
    convolutions = sum(v.numel() for k, v in params.items() if k.endswith("conv0.weight") or k.endswith("conv1.weight")
                       or k.endswith("conv2.weight") or k.endswith("shortcut.weight"))
    assert convolutions == 12_414_848  # MetaOptNet's ResNet-12: 12.4M convolution weights
    assert params["head.weight"].shape == (5, 640) and not any(k.endswith("conv0.bias") for k in params)
    assert params["block0.conv0.weight"].std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.05)  # fan-out


@pytest.mark.parametrize("image_size", [16, 32])
def test_resnet12_features_have_ten_times_the_base_width_at_any_image_size(image_size):
    params = RESNET12.init(torch.Generator().manual_seed(0), 3, image_size, 5, 3)
    x = torch.rand(4, 3, image_size, image_size)
    assert RESNET12.features(params, x).shape == (4, widths("resnet12", 3)[-1])
    assert RESNET12.forward(params, x).shape == (4, 5)


def test_images_too_small_for_four_pools_are_refused():
    for backbone in (CONV4, RESNET12):
        with pytest.raises(ValueError, match="too small"):
            backbone.init(torch.Generator(), 3, 15, 5, 2)


def metaoptnet_block(params, prefix, x):
    """MetaOptNet's BasicBlock order (leaky ReLU before the pool), from F.* ops with batch-statistics BN."""
    def bn(t, name):
        return F.batch_norm(t, None, None, params[f"{name}.weight"], params[f"{name}.bias"], training=True)

    out = F.leaky_relu(bn(F.conv2d(x, params[f"{prefix}conv0.weight"], padding=1), f"{prefix}bn0"), 0.1)
    out = F.leaky_relu(bn(F.conv2d(out, params[f"{prefix}conv1.weight"], padding=1), f"{prefix}bn1"), 0.1)
    out = bn(F.conv2d(out, params[f"{prefix}conv2.weight"], padding=1), f"{prefix}bn2")
    residual = bn(F.conv2d(x, params[f"{prefix}shortcut.weight"]), f"{prefix}shortcut_bn")
    return F.max_pool2d(F.leaky_relu(out + residual, 0.1), 2)


def metaoptnet_forward(params, x):
    for block in range(4):
        x = metaoptnet_block(params, f"block{block}.", x)
    return F.linear(x.mean(dim=(-2, -1)), params["head.weight"], params["head.bias"])


def test_resnet12_equals_metaoptnets_layer_order(float64):
    params = perturbed_params(RESNET12, filters=2)
    x = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ours, reference = RESNET12.forward(params, x), metaoptnet_forward(params, x)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)
    for got, expected in zip(meta_grads(ours.logsumexp(-1).sum(), params).values(),
                             meta_grads(reference.logsumexp(-1).sum(), params).values()):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def resnet_task(seed: int, ways: int = 3, shots: int = 1, queries: int = 2):
    return tiny_task(ways, shots, queries, seed=seed, image_size=16)


def resnet_params(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return {k: v.requires_grad_(True) for k, v in RESNET12.init(gen, 1, 16, 3, 2, torch.float64).items()}


def resnet_loss(algorithm: str, params, task, steps: int = 2) -> torch.Tensor:
    return get_algorithm(algorithm, {}, RESNET12).task_result(params, {}, RULE, task, steps, training=True).query_loss


def finite_difference_errors(algorithm: str, seed: int, directions: int = 2, eps: float = 1e-7) -> list[float]:
    """Relative errors of ``algorithm``'s meta-gradient, along random directions, against central differences
    of second-order MAML's query loss (2 inner steps, float64).

    The meta-loss is only piecewise smooth: the inner gradients jump where a leaky ReLU or a max-pool switches,
    so a step of 1e-6 along a random direction sometimes crosses a switch (measured: relative errors up to 3 at
    1e-6, below 2e-8 at 1e-7 and 1e-8 for 4 seeds x 3 directions); 1e-7 stays inside one smooth piece."""
    params, task = resnet_params(seed), resnet_task(seed + 10)
    grads = meta_grads(resnet_loss(algorithm, params, task), params)
    gen = torch.Generator().manual_seed(seed + 100)
    errors = []
    for _ in range(directions):
        direction = {k: torch.randn(v.shape, generator=gen, dtype=torch.float64) for k, v in params.items()}
        with torch.no_grad():
            plus = resnet_loss("maml", {k: v + eps * direction[k] for k, v in params.items()}, task)
            minus = resnet_loss("maml", {k: v - eps * direction[k] for k, v in params.items()}, task)
        numeric = (plus - minus) / (2 * eps)
        analytic = sum((grads[k] * direction[k]).sum() for k in params)
        errors.append(float((analytic - numeric).abs() / numeric.abs()))
    return errors


@pytest.mark.parametrize("seed", [0, 1])
def test_resnet12_maml_meta_gradient_matches_central_finite_differences(float64, seed):
    errors = finite_difference_errors("maml", seed)
    assert max(errors) < 1e-6, errors


def test_resnet12_maml_meta_gradient_equals_an_independent_autograd_unroll(float64):
    params, tasks = resnet_params(), [resnet_task(s) for s in range(2)]
    ours = algorithm_meta_gradient(get_algorithm("maml", {}, RESNET12), params, 0.3, tasks, 2)
    reference = unrolled_meta_gradient(RESNET12, params, 0.3, tasks, 2)
    assert float((ours - reference).norm() / reference.norm()) < 1e-10


def test_the_finite_difference_check_catches_resnet12s_first_order_gradient(float64):
    """Negative control: FOMAML's meta-gradient is not MAML's; the same check must reject it."""
    assert max(finite_difference_errors("fomaml", 0)) > 1e-3


@pytest.mark.parametrize("algorithm", ["maml", "anil"])
def test_resnet12_vmap_equals_the_per_task_loop_in_float64(float64, algorithm):
    params, tasks = resnet_params(), [resnet_task(s) for s in range(3)]
    loop = torch.stack([resnet_loss(algorithm, params, t) for t in tasks])
    batched = batched_task_results(get_algorithm(algorithm, {}, RESNET12), params, {}, RULE, tasks, 2, training=True)
    torch.testing.assert_close(batched.query_loss, loop, rtol=1e-12, atol=1e-12)
    expected, got = meta_grads(loop.mean(), params), meta_grads(batched.query_loss.mean(), params)
    for key in params:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-9, atol=1e-12, msg=key)


class FusedBatchNormUnderVmap(ResNet12):
    """The tempting ResNet-12 under vmap: the fused affine BatchNorm kept (F.max_pool2d, which vmap supports)."""

    def max_pool_2x2(self, x):
        return F.max_pool2d(x, 2)


def test_the_vmap_check_catches_the_fused_affine_batch_norm_in_resnet12(float64):
    """Negative control: vmapping the fused affine BatchNorm drops second-order terms; the loop is exact."""
    params, tasks = resnet_params(), [resnet_task(s) for s in range(3)]
    maml = get_algorithm("maml", {}, FusedBatchNormUnderVmap())
    stacked = [torch.stack([getattr(t, f) for t in tasks]) for f in ("xs", "ys", "xq", "yq")]

    def query_loss(xs, ys, xq, yq):
        return maml.task_result(params, {}, RULE, type(tasks[0])(xs, ys, xq, yq), 2, training=True).query_loss

    def flat_meta_grad(loss):
        return torch.cat([g.flatten() for g in meta_grads(loss, params).values()])

    vmapped = flat_meta_grad(torch.func.vmap(query_loss)(*stacked).mean())
    looped = flat_meta_grad(torch.stack([resnet_loss("maml", params, t) for t in tasks]).mean())
    assert float((vmapped - looped).norm() / looped.norm()) > 1e-8
