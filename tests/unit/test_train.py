"""Training and evaluation of one run on a tiny synthetic dataset."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from metalr import config as config_mod
from metalr import io
from metalr.config import Run
from metalr.data.arrays import load_split
from metalr.data.episodes import make_task_list
from metalr.evaluate.evaluate import evaluate
from metalr.train.loop import DivergenceError, output_files, train
from tests.unit.synthetic import write_blobs
from metalr.train.schedule import outer_lr


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_blobs(tmp_path_factory.mktemp("blobs"))


def tiny_config(**train) -> dict:
    cfg = config_mod.load([config_mod.DEFAULT_CONFIG])
    cfg["experiment"] = "unit"
    cfg["model"]["filters"] = 4
    cfg["train"].update({"iterations": 6, "inner_steps": 2, "queries": 2, "log_every": 2, "checkpoint_every": 3,
                         **train})
    cfg["evaluate"].update({"tasks": 12, "inner_steps": 3, "queries": 3})
    return cfg


RUN = Run("glyphs", 3, 1, "maml", "mlplr", 1)


def test_same_seed_gives_identical_outputs_and_lambda_log(data_dir, tmp_path):
    cfg = tiny_config()
    for name in ("a", "b"):
        train(cfg, RUN, data_dir, tmp_path / name, tmp_path / f"{name}.ckpt", progress=False)
    for a, b in zip(output_files(tmp_path / "a"), output_files(tmp_path / "b")):
        if a.suffix == ".pt":
            ma, mb = torch.load(a, weights_only=False), torch.load(b, weights_only=False)
            assert all(torch.equal(ma["params"][k], mb["params"][k]) for k in ma["params"])
        else:
            assert a.read_bytes() == b.read_bytes()
    lambdas = np.load(tmp_path / "a" / "lambdas.npy")
    assert lambdas.shape == (6, cfg["train"]["task_batch"], 2)
    rule = cfg["rules"]["mlplr"]
    # Eq. 5: every λ is lr_min or lr_max - KL with 0 <= KL <= lr_max
    assert np.all(np.isclose(lambdas, rule["lr_min"]) | ((lambdas >= 0) & (lambdas <= rule["lr_max"] + 1e-6)))
    assert not (tmp_path / "a.ckpt").exists()  # removed once the final outputs are in place


def test_divergence_stops_with_run_iteration_and_last_finite_loss(data_dir, tmp_path):
    cfg = tiny_config(outer_lr=1e30)
    cfg["rules"]["mlplr"].update(lr_max=1e6, lr_min=1e6)
    with pytest.raises(DivergenceError) as err:
        train(cfg, RUN, data_dir, tmp_path / "out", tmp_path / "ckpt", progress=False)
    message = str(err.value)
    assert RUN.run_id in message and "iteration" in message and "last finite loss" in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_evaluation_scores_the_frozen_tasks(data_dir, tmp_path):
    cfg = tiny_config(iterations=4)
    train(cfg, RUN, data_dir, tmp_path / "model", tmp_path / "ckpt", progress=False)
    split = load_split(data_dir, "test")
    tasks = make_task_list(split, dataset="glyphs", split_name="test", ways=3, shots=1, queries=3, tasks=12, seed=1,
                           split_sha256={})
    io.write_json(tmp_path / "tasks.json", tasks)
    metrics = evaluate(cfg, RUN, tmp_path / "model" / "model.pt", tmp_path / "tasks.json", data_dir,
                       tmp_path / "metrics.json", progress=False)
    assert metrics["task_list"]["sha256"] == tasks["sha256"]
    assert len(metrics["per_task_accuracy"]) == 12 and metrics["accuracy"]["n_tasks"] == 12
    assert metrics["accuracy"]["mean"] == pytest.approx(np.mean(metrics["per_task_accuracy"]), abs=1e-6)
    # per class: the task list's classes in label order, each with its queries' accuracy (3 queries: thirds)
    assert metrics["per_task_classes"] == [e["classes"] for e in tasks["episodes"]]
    class_accuracy = np.array(metrics["per_task_class_accuracy"])
    assert class_accuracy.shape == (12, 3) and np.allclose(class_accuracy * 3, np.round(class_accuracy * 3), atol=1e-5)
    assert class_accuracy.mean(axis=1) == pytest.approx(metrics["per_task_accuracy"], abs=1e-6)
    assert metrics["task_list"]["distinct_tasks"] == tasks["distinct_tasks"] == 12
    assert len(metrics["lambda"]["mean_per_step"]) == 3
    assert io.read_json(tmp_path / "metrics.json") == metrics


def test_evaluation_refuses_a_model_trained_with_another_config(data_dir, tmp_path):
    cfg = tiny_config(iterations=2)
    train(cfg, RUN, data_dir, tmp_path / "model", tmp_path / "ckpt", progress=False)
    other = tiny_config(iterations=3)
    with pytest.raises(ValueError, match="different config"):
        evaluate(other, RUN, tmp_path / "model" / "model.pt", tmp_path / "missing.json", data_dir,
                 tmp_path / "metrics.json", progress=False)
    assert not (tmp_path / "metrics.json").exists()


def test_cosine_schedule_anneals_from_outer_lr_to_outer_lr_min():
    tcfg = {"outer_lr": 1e-3, "outer_lr_min": 1e-5, "iterations": 100, "outer_lr_schedule": "cosine"}
    rates = [outer_lr(tcfg, it) for it in range(101)]
    assert rates[0] == pytest.approx(1e-3) and rates[100] == pytest.approx(1e-5)
    assert rates[50] == pytest.approx((1e-3 + 1e-5) / 2)
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert outer_lr({**tcfg, "outer_lr_schedule": "constant"}, 70) == 1e-3


def test_cosine_schedule_changes_the_trained_model(data_dir, tmp_path):
    models = {}
    for schedule in ("constant", "cosine"):
        cfg = tiny_config(iterations=3, outer_lr=0.01, outer_lr_schedule=schedule, outer_lr_min=0.0)
        train(cfg, RUN, data_dir, tmp_path / schedule, tmp_path / f"{schedule}.ckpt", progress=False)
        models[schedule] = torch.load(tmp_path / schedule / "model.pt", weights_only=False)["params"]
    # The first step is the same (cos(0) = 1), later steps are smaller under cosine.
    assert any(not torch.equal(models["constant"][k], models["cosine"][k]) for k in models["constant"])
