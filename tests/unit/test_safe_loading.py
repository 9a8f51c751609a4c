"""No code from data files (issue 13, item 2): models, checkpoints and CIFAR's pickles holding a pickled object
whose ``__reduce__`` would run a command are refused, named, and never run; what metalr writes loads."""
from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import pytest
import torch

from metalr import cli, io, stages
from metalr import config as config_mod
from metalr.data import cifar_fs
from metalr.train import checkpoint
from metalr.train.loop import LOG_FILE, MODEL_FILE
from tests.unit.synthetic import RUN_ID, tiny_project

RUN = config_mod.Run.parse(RUN_ID)


class Payload:
    """Unpickling it would create ``marker``: the stand-in for a shell command."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


@pytest.fixture(scope="module")
def built(tmp_path_factory, blobs_root):
    return tiny_project(tmp_path_factory.mktemp("safe"), blobs_root)


@pytest.fixture
def project(built, tmp_path, monkeypatch):
    copy = tmp_path / "project"
    shutil.copytree(built, copy)
    monkeypatch.chdir(copy)
    return copy


def model_path(project):
    cfg = config_mod.load([config_mod.DEFAULT_CONFIG, project / "tiny.yaml"])
    return project / stages.model_dir(cfg, RUN) / MODEL_FILE


def evaluate(capsys) -> tuple[int, str]:
    code = cli.main(["evaluate", "--configfile", "tiny.yaml", "--run", RUN_ID, "--no-progress"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("hash_recorded", [False, True])
def test_a_model_carrying_code_is_refused_and_never_run(project, capsys, hash_recorded):
    """Models travel through DVC remotes: whoever replaces model.pt may replace its training log too."""
    model = model_path(project)
    marker = project / "pwned"
    real = torch.load(model, weights_only=True)
    sha = checkpoint.write_torch(model, {**real, "params": Payload(str(marker))})
    if hash_recorded:
        log = io.read_json(model.parent / LOG_FILE)
        io.write_json(model.parent / LOG_FILE, {**log, "model_sha256": sha})
    metrics = sorted((project / "results").rglob("metrics/**/*.json"))
    for path in metrics:
        path.unlink()
    code, err = evaluate(capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert str(model.relative_to(project)) in err
    if hash_recorded:
        assert "holds a pickled object that is not a tensor or a plain container" in err
        assert "refused without running it" in err and "os.makedirs" in err
    else:
        assert "its training recorded" in err and f"rerun the train stage for run {RUN_ID}" in err
    assert not marker.exists()
    assert not [p for p in (project / "results").rglob("metrics/**/*.json")]


def test_a_checkpoint_carrying_code_is_refused_and_never_run(project, capsys):
    cfg = config_mod.load([config_mod.DEFAULT_CONFIG, project / "tiny.yaml"])
    ckpt = project / stages.checkpoint_file(cfg, RUN)
    marker = project / "pwned"
    checkpoint.write_torch(ckpt, {"config": stages.settings("train", cfg, stages.run_job(RUN)), "iteration": 3,
                                  "payload": Payload(str(marker))})
    code = cli.main(["train", "--configfile", "tiny.yaml", "--run", RUN_ID, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and str(stages.checkpoint_file(cfg, RUN)) in err and "refused without running it" in err
    assert not marker.exists()
    assert ckpt.exists()  # refused, not set aside: the file is evidence


def test_what_training_writes_loads_with_weights_only(project):
    """The positive control: model and checkpoint hold tensors and plain containers only."""
    cfg = config_mod.load([config_mod.DEFAULT_CONFIG, project / "tiny.yaml"])
    model = checkpoint.read_torch(model_path(project), "retrain")
    assert set(model) >= {"params", "meta", "config", "environment"}
    state = {"config": stages.settings("train", cfg, stages.run_job(RUN)), "iteration": 2, "lambdas": np.zeros((2, 2, 2), np.float32),
             "losses": np.zeros(2), "accuracies": np.zeros(2), "outer_lrs": np.zeros((2, 0)),
             "rng": np.random.default_rng(1).bit_generator.state}
    checkpoint.save(project / "c.pt", state)
    loaded = checkpoint.load(project / "c.pt", stages.settings("train", cfg, stages.run_job(RUN)))
    assert loaded["rng"] == state["rng"] and loaded["lambdas"].dtype == np.float32


def test_a_cifar_pickle_carrying_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "meta"
    path.write_bytes(pickle.dumps({"fine_label_names": ["apple"], "x": Payload(str(marker))}))
    with pytest.raises(io.UnsafeFile, match=r"meta holds a pickled object .*os.makedirs is not allowed"):
        cifar_fs.read_pickle(path)
    assert not marker.exists()
    arrays = tmp_path / "train"  # numpy arrays and plain containers (CIFAR's content) load
    arrays.write_bytes(pickle.dumps({"data": np.arange(6, dtype=np.uint8), "fine_labels": [1, 2]}, protocol=2))
    assert cifar_fs.read_pickle(arrays)["data"].tolist() == list(range(6))
