"""A training job killed with SIGKILL resumes from its checkpoint and ends bitwise-identical."""
from __future__ import annotations

import copy
import os
import shutil
import signal
import time

import numpy as np
import pytest
import torch

from metalr import cli
from metalr import config as config_mod
from metalr import stages
from metalr.config import Run
from metalr.train import checkpoint
from metalr.train.loop import LAMBDAS_FILE, LOG_FILE, MODEL_FILE, train
from tests.unit.synthetic import RUN_ID, metalr_popen, write_config

RUN = Run.parse(RUN_ID)
TRAIN = {"iterations": 12, "checkpoint_every": 2}
TRAIN_ARGS = ("train", "--configfile", "tiny.yaml", "--run", RUN_ID, "--no-progress")


def load_cfg(folder):
    return config_mod.load([config_mod.DEFAULT_CONFIG, folder / "tiny.yaml"])


def model_dir(folder):
    return folder / stages.model_dir(load_cfg(folder), RUN)


def checkpoint_path(folder):
    return folder / stages.checkpoint_file(load_cfg(folder), RUN)


def strip_optimizer_state(path) -> None:
    """Keep the optimizer's settings but drop Adam's moments and step counts."""
    state = torch.load(path, weights_only=True)
    state["optimizer"]["state"] = {}
    checkpoint.save(path, state)


@pytest.fixture(scope="module")
def killed_and_whole(tmp_path_factory, blobs_root):
    """`killed`: SIGKILLed once its first checkpoint appears, then rerun; `whole`: never interrupted."""
    killed, whole = tmp_path_factory.mktemp("killed"), tmp_path_factory.mktemp("whole")
    for folder in (killed, whole):
        write_config(folder, blobs_root, train=TRAIN)
    ckpt = checkpoint_path(killed)
    proc = metalr_popen(killed, *TRAIN_ARGS)
    deadline = time.monotonic() + 120
    while not ckpt.exists():
        assert proc.poll() is None, f"training ended before its first checkpoint:\n{proc.communicate()}"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert not (model_dir(killed) / MODEL_FILE).exists(), "the run finished before it was killed: raise iterations"
    shutil.copy(ckpt, killed / "at_kill.pt")
    resumed, uninterrupted = metalr_popen(killed, *TRAIN_ARGS), metalr_popen(whole, *TRAIN_ARGS)
    outs = [p.communicate() for p in (resumed, uninterrupted)]
    assert resumed.returncode == uninterrupted.returncode == 0, outs
    return killed, whole, outs[0][1]


def test_killed_run_resumes_and_ends_bitwise_identical(killed_and_whole):
    killed, whole, resumed_stderr = killed_and_whole
    at = torch.load(killed / "at_kill.pt", weights_only=True)["iteration"]
    assert 0 < at < TRAIN["iterations"]
    assert f"resuming from {stages.checkpoint_file(load_cfg(killed), RUN)} at iteration {at}" in resumed_stderr
    for name in (LAMBDAS_FILE, LOG_FILE, MODEL_FILE):  # λ log, metrics log, parameters and rule state
        assert (model_dir(killed) / name).read_bytes() == (model_dir(whole) / name).read_bytes(), name
    assert not checkpoint_path(killed).exists()  # removed once the final outputs are in place


def record_checkpoints(monkeypatch) -> list[dict]:
    saved: list[dict] = []
    real_save = checkpoint.save
    monkeypatch.setattr(checkpoint, "save", lambda path, state: (saved.append(copy.deepcopy(state)),
                                                                  real_save(path, state)))
    return saved


def test_resume_restores_optimizer_rng_and_logs(killed_and_whole, blobs_root, tmp_path, monkeypatch):
    """Every checkpoint after the resume point equals the uninterrupted run's, field by field."""
    killed, _, _ = killed_and_whole
    cfg = load_cfg(killed)
    runs = {}
    for name, start in (("whole", None), ("resumed", killed / "at_kill.pt")):
        ckpt = tmp_path / f"{name}.pt"
        if start:
            shutil.copy(start, ckpt)
        saved = record_checkpoints(monkeypatch)
        train(cfg, RUN, blobs_root / "glyphs", tmp_path / name, ckpt, progress=False)
        runs[name] = {state["iteration"]: state for state in saved}
    assert runs["resumed"] and set(runs["resumed"]) < set(runs["whole"])
    for iteration, state in runs["resumed"].items():
        expected = runs["whole"][iteration]
        assert state["rng"] == expected["rng"]
        assert all(torch.equal(state["trainable"][k], expected["trainable"][k]) for k in expected["trainable"])
        moments, expected_moments = state["optimizer"]["state"], expected["optimizer"]["state"]
        assert moments.keys() == expected_moments.keys()
        for index, values in moments.items():
            assert all(torch.equal(values[k], expected_moments[index][k]) for k in values), (iteration, index)
        for key in ("lambdas", "losses", "accuracies"):
            assert np.array_equal(state[key], expected[key]), key


def test_resume_without_optimizer_state_differs(killed_and_whole, blobs_root, tmp_path):
    """Negative control: the comparison above would catch a checkpoint that lost Adam's moments."""
    killed, whole, _ = killed_and_whole
    ckpt = tmp_path / "stripped.pt"
    shutil.copy(killed / "at_kill.pt", ckpt)
    strip_optimizer_state(ckpt)
    train(load_cfg(killed), RUN, blobs_root / "glyphs", tmp_path / "out", ckpt, progress=False)
    stripped = torch.load(tmp_path / "out" / MODEL_FILE, weights_only=True)["params"]
    reference = torch.load(model_dir(whole) / MODEL_FILE, weights_only=True)["params"]
    assert not all(torch.equal(stripped[k], reference[k]) for k in reference)


def test_resume_with_another_config_is_refused(killed_and_whole, blobs_root, tmp_path, monkeypatch, capsys):
    killed, _, _ = killed_and_whole
    write_config(tmp_path, blobs_root, train={**TRAIN, "outer_lr": 0.01}, model={"filters": 3})
    ckpt = checkpoint_path(tmp_path)
    ckpt.parent.mkdir(parents=True)
    shutil.copy(killed / "at_kill.pt", ckpt)
    monkeypatch.chdir(tmp_path)
    assert cli.main(list(TRAIN_ARGS)) == 2
    err = capsys.readouterr().err
    assert "was made with a different config" in err and "['model.filters', 'train.outer_lr']" in err
    assert "delete it" in err and str(stages.checkpoint_file(load_cfg(tmp_path), RUN)) in err
    assert ckpt.exists() and not (tmp_path / "results").exists()
