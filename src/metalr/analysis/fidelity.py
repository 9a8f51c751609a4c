"""Gradient fidelity: how close FOMAML's and iMAML's meta-gradients come to the exact one.

For one seeded initialisation of the backbone ``model.name`` and one task batch, in float64
(second-order gradients in float32 drift by percents after a few steps; GUIDE section 4), and for
each number of inner steps K:

* the exact meta-gradient: second-order MAML through K steps of the fixed rule (``rules.fixed.lr``);
* FOMAML's (the same inner loop, inner gradients detached);
* iMAML's, for each CG step count, after K steps on its proximal inner problem
  (λ = ``algorithms.imaml.lam``).

Each approximation g is compared with its reference r by the cosine <g, r>/(|g||r|) and the relative
error |g - r|/|r|, all parameters as one vector. iMAML is compared twice: with MAML's exact
meta-gradient (what the issue asks: both approximate MAML), and with the exact gradient of its own
unrolled proximal inner loop (the anchor θ differentiated too), which the implicit gradient reaches
when the inner loop converges and CG is exact. The batch meta-gradient is the mean over the tasks.
The framework's MAML gradient is also checked against an independent ``torch.autograd`` unroll, and
that difference is recorded (it should be rounding error).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from metalr import io, seeding
from metalr.algorithms import get_algorithm
from metalr.algorithms.base import Algorithm, Task
from metalr.data.arrays import MANIFEST, load_split
from metalr.data.episodes import episode_tensors, sample_episode
from metalr.models import get_backbone
from metalr.models.base import Backbone
from metalr.steprules import make_rule
from metalr.steprules.base import Params

EXACT = "maml"
PROXIMAL_REFERENCE = "imaml_unrolled"  # exact backprop through iMAML's own proximal inner loop
Loss = Callable[[Params], torch.Tensor]


def flat(grads: Params) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads.values()])


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a, b) / (a.norm() * b.norm()))


def relative_error(approx: torch.Tensor, reference: torch.Tensor) -> float:
    return float((approx - reference).norm() / reference.norm())


def algorithm_meta_gradient(algorithm: Algorithm, params: Params, lr: float, tasks: Sequence[Task],
                            steps: int) -> torch.Tensor:
    """The framework's meta-gradient (of ``meta_objective``), averaged over the tasks, as one vector."""
    rule = make_rule("fixed", {"fixed": {"lr": lr}})
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    total = torch.zeros(sum(v.numel() for v in leaves.values()), dtype=next(iter(leaves.values())).dtype)
    for task in tasks:
        objective = algorithm.task_result(leaves, {}, rule, task, steps, training=True).meta_objective
        total += flat(dict(zip(leaves, torch.autograd.grad(objective, list(leaves.values())))))
    return total / len(tasks)


def unrolled_gradient(support_loss: Loss, query_loss: Loss, theta: Params, lr: float, steps: int,
                      lam: float = 0.0) -> Params:
    """Independent reference for one task: backprop through ``steps`` gradient steps on
    support_loss(φ) + λ/2 |φ - θ|² from φ = θ, with θ (start and anchor) differentiated; λ = 0 is MAML."""
    theta = {k: v.detach().requires_grad_(True) for k, v in theta.items()}
    phi = dict(theta)
    for _ in range(steps):
        loss = support_loss(phi) + lam / 2 * sum(((phi[k] - theta[k]) ** 2).sum() for k in phi)
        grads = torch.autograd.grad(loss, list(phi.values()), create_graph=True)
        phi = {k: v - lr * g for (k, v), g in zip(phi.items(), grads)}
    return dict(zip(theta, torch.autograd.grad(query_loss(phi), list(theta.values()))))


def unrolled_meta_gradient(backbone: Backbone, params: Params, lr: float, tasks: Sequence[Task], steps: int,
                           lam: float = 0.0) -> torch.Tensor:
    """``unrolled_gradient`` of the backbone's cross-entropies, averaged over the tasks, as one vector."""
    def loss(x: torch.Tensor, y: torch.Tensor) -> Loss:
        return lambda p: F.cross_entropy(backbone.forward(p, x), y)

    grads = [flat(unrolled_gradient(loss(t.xs, t.ys), loss(t.xq, t.yq), params, lr, steps, lam)) for t in tasks]
    return torch.stack(grads).mean(0)


def compare(algorithm: str, steps: int, cg_steps: int | None, reference: str, approx: torch.Tensor,
            exact: torch.Tensor) -> dict[str, Any]:
    return {"algorithm": algorithm, "inner_steps": steps, "cg_steps": cg_steps, "reference": reference,
            "cosine": cosine(approx, exact), "relative_error": relative_error(approx, exact)}


def measure(backbone: Backbone, params: Params, tasks: Sequence[Task], lr: float, lam: float,
            inner_steps: Sequence[int], cg_steps: Sequence[int]) -> dict[str, Any]:
    """Every comparison, for ``backbone``'s float64 ``params`` and ``tasks``: rows of cosine and relative error.

    Raises ValueError if ``params`` are not float64."""
    if next(iter(params.values())).dtype != torch.float64:
        raise ValueError("gradient fidelity is measured in float64; got parameters of another dtype")
    maml, fomaml = get_algorithm("maml", {}, backbone), get_algorithm("fomaml", {}, backbone)
    rows, checks = [], []
    for steps in inner_steps:
        exact = algorithm_meta_gradient(maml, params, lr, tasks, steps)
        checks.append({"inner_steps": steps, "relative_error": relative_error(
            exact, unrolled_meta_gradient(backbone, params, lr, tasks, steps))})
        rows.append(compare("fomaml", steps, None, EXACT, algorithm_meta_gradient(fomaml, params, lr, tasks, steps),
                            exact))
        proximal_exact = unrolled_meta_gradient(backbone, params, lr, tasks, steps, lam)
        for cg in cg_steps:
            imaml = dataclasses.replace(get_algorithm("imaml", {}, backbone), lam=lam, cg_steps=cg)
            approx = algorithm_meta_gradient(imaml, params, lr, tasks, steps)
            rows.append(compare("imaml", steps, cg, EXACT, approx, exact))
            rows.append(compare("imaml", steps, cg, PROXIMAL_REFERENCE, approx, proximal_exact))
    return {"results": rows, "maml_vs_independent_unroll": checks}


def fidelity_settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The config values the measurement depends on (recorded with the results)."""
    return {"fidelity": dict(cfg["analysis"]["fidelity"]), "inner_lr": cfg["rules"]["fixed"]["lr"],
            "lam": cfg["algorithms"]["imaml"]["lam"], "backbone": cfg["model"]["name"],
            "filters": cfg["model"]["filters"],
            "keys": {"inner_lr": "rules.fixed.lr", "lam": "algorithms.imaml.lam", "backbone": "model.name",
                     "filters": "model.filters"}}


def task_batch(cfg: Mapping[str, Any], data_dir: Path) -> tuple[list[Task], dict[str, Any], list[int]]:
    """The first training batch a run seeded ``analysis.fidelity.seed`` would draw, in float64,
    with its provenance (split, manifest hash, episodes) and the image shape."""
    fcfg = cfg["analysis"]["fidelity"]
    split = load_split(data_dir, fcfg["split"])
    rng = seeding.numpy_rng(fcfg["seed"], seeding.STREAM_TRAIN_TASKS)
    by_class = split.indices_by_class()
    episodes = [sample_episode(rng, by_class, fcfg["ways"], fcfg["shots"], fcfg["queries"])
                for _ in range(fcfg["task_batch"])]
    tasks = [episode_tensors(split, e, dtype=torch.float64) for e in episodes]
    provenance = {"dataset": fcfg["dataset"], "split": fcfg["split"],
                  "manifest_sha256": io.sha256_file(data_dir / MANIFEST), "episodes": [e.as_dict() for e in episodes]}
    return tasks, provenance, list(split.images.shape[1:])


def run(cfg: Mapping[str, Any], data_dir: Path, out_path: Path) -> dict[str, Any]:
    """Measure on the configured dataset split and write the JSON results (atomically)."""
    fcfg = cfg["analysis"]["fidelity"]
    tasks, provenance, (channels, size, _) = task_batch(cfg, Path(data_dir))
    backbone = get_backbone(cfg["model"]["name"])
    params = backbone.init(seeding.torch_generator(fcfg["seed"], seeding.STREAM_INIT), channels, size, fcfg["ways"],
                           filters=cfg["model"]["filters"], dtype=torch.float64)
    settings = fidelity_settings(cfg)
    result = {"experiment": cfg["experiment"], "settings": settings, "data": provenance,
              "environment": seeding.environment(),
              **measure(backbone, params, tasks, settings["inner_lr"], settings["lam"], fcfg["inner_steps"],
                        fcfg["cg_steps"])}
    io.write_json(out_path, result)
    return result
