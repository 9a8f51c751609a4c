"""Gradient fidelity: the measures, the exact references, and the properties the comparisons must show."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metalr import config as config_mod
from metalr import io
from metalr.algorithms.imaml import implicit_gradient
from metalr.analysis import fidelity
from tests.unit.helpers import CONV4, tiny_params, tiny_task
from tests.unit.synthetic import metalr, write_config

vectors = st.lists(st.floats(-10, 10, allow_nan=False), min_size=3, max_size=3).map(
    lambda v: torch.tensor(v, dtype=torch.float64)).filter(lambda v: v.norm() > 1e-3)


@settings(max_examples=50, deadline=None)
@given(vectors, vectors, st.floats(0.01, 100))
def test_cosine_and_relative_error_properties(a, b, scale):
    assert fidelity.cosine(a, a) == pytest.approx(1.0, abs=1e-12)
    assert fidelity.relative_error(a, a) == 0.0
    assert -1 - 1e-12 <= fidelity.cosine(a, b) <= 1 + 1e-12
    assert fidelity.cosine(scale * a, b) == pytest.approx(fidelity.cosine(a, b), abs=1e-9)
    assert fidelity.relative_error(-a, a) == pytest.approx(2.0)


@pytest.fixture(scope="module")
def tiny_batch():
    return tiny_params(), [tiny_task(seed=1), tiny_task(seed=2)]


def test_framework_maml_is_the_exact_unrolled_gradient(tiny_batch):
    params, tasks = tiny_batch
    result = fidelity.measure(CONV4, params, tasks, lr=0.3, lam=1.0, inner_steps=[1, 3], cg_steps=[2])
    assert [c["relative_error"] for c in result["maml_vs_independent_unroll"]] == pytest.approx([0, 0], abs=1e-12)
    # Negative control: FOMAML is not exact, so the measure can tell them apart.
    fomaml = [r for r in result["results"] if r["algorithm"] == "fomaml"]
    assert all(r["relative_error"] > 1e-3 and r["cosine"] < 1 - 1e-6 for r in fomaml)


def test_fomaml_error_vanishes_linearly_with_the_inner_rate(tiny_batch):
    """MAML's Jacobian is I - αH per step: FOMAML drops the αH term, so its error is O(α)."""
    params, tasks = tiny_batch
    errors = []
    for lr in (0.04, 0.004):
        rows = fidelity.measure(CONV4, params, tasks, lr=lr, lam=1.0, inner_steps=[2], cg_steps=[1])["results"]
        errors.append(next(r["relative_error"] for r in rows if r["algorithm"] == "fomaml"))
    assert errors[1] < errors[0] / 5 and errors[1] < 0.05


def test_after_one_step_imaml_unrolled_reference_is_maml(tiny_batch):
    """At φ = θ the proximal term's gradient λ(φ - θ) is 0 for every θ, so one step is MAML's step."""
    params, tasks = tiny_batch
    rows = fidelity.measure(CONV4, params, tasks, lr=0.3, lam=1.0, inner_steps=[1, 2], cg_steps=[3])["results"]
    imaml = {(r["inner_steps"], r["reference"]): r["relative_error"] for r in rows if r["algorithm"] == "imaml"}
    assert imaml[1, fidelity.EXACT] == pytest.approx(imaml[1, fidelity.PROXIMAL_REFERENCE], rel=1e-9)
    assert imaml[2, fidelity.EXACT] != pytest.approx(imaml[2, fidelity.PROXIMAL_REFERENCE], rel=1e-3)


def test_imaml_reaches_the_unrolled_gradient_on_a_quadratic_inner_problem():
    """Strongly convex quadratic inner problem: the unrolled proximal gradient converges to the implicit
    one as the inner loop converges (with exact CG), and too few CG steps stay away from it."""
    gen = torch.Generator().manual_seed(0)
    n, lam, lr = 5, 1.5, 0.1
    m = torch.randn(n, n, generator=gen, dtype=torch.float64)
    a = m @ m.T / n + 0.1 * torch.eye(n, dtype=torch.float64)
    b, c = torch.randn(n, generator=gen, dtype=torch.float64), torch.randn(n, generator=gen, dtype=torch.float64)
    theta = {"w": torch.randn(n, generator=gen, dtype=torch.float64)}
    support = lambda p: 0.5 * p["w"] @ a @ p["w"] - b @ p["w"]  # noqa: E731
    query = lambda p: 0.5 * ((p["w"] - c) ** 2).sum()  # noqa: E731

    def implicit(steps: int, cg: int) -> torch.Tensor:
        w = theta["w"].clone()
        for _ in range(steps):
            w = w - lr * (a @ w - b + lam * (w - theta["w"]))
        return implicit_gradient(support, {"w": w}, {"w": w - c}, lam, cg)["w"]

    errors = [fidelity.relative_error(implicit(k, n), fidelity.unrolled_gradient(support, query, theta, lr, k, lam)["w"])
              for k in (5, 50, 400)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-10
    exact = fidelity.unrolled_gradient(support, query, theta, lr, 400, lam)["w"]
    assert fidelity.relative_error(implicit(400, 1), exact) > 1e-3


def test_measure_refuses_float32():
    params = {k: v.detach().float() for k, v in tiny_params().items()}
    with pytest.raises(ValueError, match="float64"):
        fidelity.measure(CONV4, params, [tiny_task()], 0.1, 1.0, [1], [1])


def test_imaml_rows_use_the_algorithms_cg_steps(tiny_batch, monkeypatch):
    params, tasks = tiny_batch
    seen = []
    real = fidelity.algorithm_meta_gradient
    monkeypatch.setattr(fidelity, "algorithm_meta_gradient",
                        lambda algorithm, *args: seen.append(getattr(algorithm, "cg_steps", None)) or real(algorithm, *args))
    fidelity.measure(CONV4, params, tasks, 0.3, 1.0, [1], [1, 4])
    assert seen == [None, None, 1, 4]  # maml, fomaml, then iMAML per CG setting


def test_cli_measures_the_configured_backbone(blobs_root, tmp_path):
    cfg_path = write_config(tmp_path, blobs_root, model={"name": "resnet12", "filters": 2}, analysis={"fidelity": {
        "dataset": "glyphs", "split": "train", "ways": 3, "shots": 1, "queries": 2, "task_batch": 1,
        "inner_steps": [1], "cg_steps": [1], "seed": 3}})
    result = metalr(tmp_path, "fidelity", "--configfile", str(cfg_path), "--out", str(tmp_path / "fidelity.json"))
    assert result.returncode == 0, result.stderr
    data = io.read_json(tmp_path / "fidelity.json")
    assert data["settings"]["backbone"] == "resnet12" and data["settings"]["keys"]["backbone"] == "model.name"
    assert max(c["relative_error"] for c in data["maml_vs_independent_unroll"]) < 1e-10


def test_cli_writes_results_and_the_report_draws_the_figure(blobs_root, tmp_path):
    cfg_path = write_config(tmp_path, blobs_root, analysis={"fidelity": {
        "dataset": "glyphs", "split": "train", "ways": 3, "shots": 1, "queries": 2, "task_batch": 2,
        "inner_steps": [1, 2], "cg_steps": [1, 2], "seed": 3}})
    out = tmp_path / "fidelity.json"
    result = metalr(tmp_path, "fidelity", "--configfile", str(cfg_path), "--out", str(out))
    assert result.returncode == 0, result.stderr
    data = io.read_json(out)
    assert len(data["results"]) == 2 * (1 + 2 * 2)
    assert len(data["data"]["episodes"]) == 2 and len(data["data"]["manifest_sha256"]) == 64
    assert data["settings"]["fidelity"]["seed"] == 3
    cfg = config_mod.load([config_mod.DEFAULT_CONFIG, cfg_path])
    assert data["settings"]["inner_lr"] == cfg["rules"]["fixed"]["lr"]
    from metalr.report import analyses

    pdf = tmp_path / "fidelity.pdf"
    analyses.fidelity_figure(data, pdf)
    assert pdf.read_bytes()[:4] == b"%PDF"
