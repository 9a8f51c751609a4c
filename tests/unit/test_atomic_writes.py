"""A failure while an artifact is being written leaves the previous file intact and no temporary."""
from __future__ import annotations

import dataclasses
import io as _io
import pathlib

import numpy as np
import pytest
import torch

from metalr import config as config_mod
from metalr import io
from metalr.config import Run
from metalr.data import prepare as prepare_mod
from metalr.data.arrays import load_split, write_dataset
from metalr.data.episodes import make_task_list
from metalr.data.registry import DATASETS
from metalr.evaluate.evaluate import evaluate
from metalr.train import checkpoint
from metalr.train.loop import LAMBDAS_FILE, LOG_FILE, MODEL_FILE, output_files, train
from tests.unit.synthetic import RUN_ID, write_blobs, write_config

RUN = Run.parse(RUN_ID)
PREVIOUS = b"previous contents"


class Killed(RuntimeError):
    """Stands for a crash in the middle of a write."""


def half_then_fail(save, target_first: bool = False):
    """Wrap ``torch.save(obj, f)`` or ``np.save(f, obj)`` so it writes half its bytes, then raises."""
    def failing(*args, **kwargs):
        (target, obj) = args[:2] if target_first else args[1::-1]
        buffer = _io.BytesIO()
        save(*((buffer, obj) if target_first else (obj, buffer)), **kwargs)
        data = buffer.getvalue()[: len(buffer.getvalue()) // 2]
        if hasattr(target, "write"):
            target.write(data)
        else:
            pathlib.Path(target).write_bytes(data)
        raise Killed("killed mid-write")
    return failing


def fail_write_bytes(monkeypatch, when=lambda path: True):
    """JSON and array bytes reach their temporary file through Path.write_bytes: cut that off half-way."""
    real = pathlib.Path.write_bytes

    def write_bytes(self, data):
        if not when(self):
            return real(self, data)
        real(self, data[: len(data) // 2])
        raise Killed("killed mid-write")
    monkeypatch.setattr(pathlib.Path, "write_bytes", write_bytes)


def assert_only(folder, names, content=PREVIOUS):
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)  # no temporary left behind
    for name in names:
        assert (folder / name).read_bytes() == content


@pytest.fixture
def cfg(tmp_path, blobs_root):
    return config_mod.load([config_mod.DEFAULT_CONFIG, write_config(tmp_path, blobs_root, train={"iterations": 2,
                                                                                              "checkpoint_every": 1})])


def test_failed_checkpoint_write_keeps_the_previous_checkpoint(cfg, blobs_root, tmp_path, monkeypatch):
    ckpt = tmp_path / "ckpt" / "run.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(PREVIOUS)
    monkeypatch.setattr(checkpoint, "load", lambda path, expected, device="cpu": None)  # start afresh over the old file
    monkeypatch.setattr(torch, "save", half_then_fail(torch.save))
    with pytest.raises(Killed):
        train(cfg, RUN, blobs_root / "glyphs", tmp_path / "out", ckpt, progress=False)
    assert_only(ckpt.parent, ["run.pt"])


@pytest.mark.parametrize("failing, target", [("torch.save", MODEL_FILE), ("np.save", LAMBDAS_FILE),
                                             ("json", LOG_FILE)])
def test_failed_output_write_keeps_the_previous_output(cfg, blobs_root, tmp_path, monkeypatch, failing, target):
    out = tmp_path / "out"
    out.mkdir()
    (out / target).write_bytes(PREVIOUS)
    if failing == "torch.save":
        monkeypatch.setattr(torch, "save", half_then_fail(torch.save))
    elif failing == "np.save":
        monkeypatch.setattr(np, "save", half_then_fail(np.save, target_first=True))
    else:
        fail_write_bytes(monkeypatch)
    cfg["train"]["checkpoint_every"] = 100  # only the final outputs are written
    with pytest.raises(Killed):
        train(cfg, RUN, blobs_root / "glyphs", out, tmp_path / "ckpt.pt", progress=False)
    assert (out / target).read_bytes() == PREVIOUS
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_failed_metrics_write_keeps_the_previous_metrics(cfg, blobs_root, tmp_path, monkeypatch):
    train(cfg, RUN, blobs_root / "glyphs", tmp_path / "model", tmp_path / "ckpt.pt", progress=False)
    ecfg = cfg["evaluate"]
    tasks = make_task_list(load_split(blobs_root / "glyphs", "test"), dataset="glyphs", split_name="test", ways=3,
                           shots=1, queries=ecfg["queries"], tasks=ecfg["tasks"], seed=1, split_sha256={})
    io.write_json(tmp_path / "tasks.json", tasks)
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "run.json").write_bytes(PREVIOUS)
    fail_write_bytes(monkeypatch)
    with pytest.raises(Killed):
        evaluate(cfg, RUN, tmp_path / "model" / MODEL_FILE, tmp_path / "tasks.json", blobs_root / "glyphs",
                 metrics / "run.json", progress=False)
    assert_only(metrics, ["run.json"])


def test_failed_preprocessing_keeps_the_previous_dataset(cfg, tmp_path, monkeypatch):
    data = tmp_path / "data" / "glyphs"
    write_blobs(data)
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    written = []

    def build(out, settings):  # a rebuild that dies in the middle of its third array
        fail_write_bytes(monkeypatch, when=lambda path: written.append(path) or len(written) == 3)
        return write_blobs(out)

    monkeypatch.setitem(DATASETS, "glyphs", dataclasses.replace(DATASETS["glyphs"], build=build))
    with pytest.raises(Killed):
        prepare_mod.prepare(cfg, "glyphs", data)
    assert len(written) == 3
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before
    assert sorted(p.name for p in data.parent.iterdir()) == ["glyphs"]  # no half-built sibling folder


def test_failed_array_write_keeps_the_previous_array(tmp_path, monkeypatch):
    """write_dataset on its own (outside ``prepare``'s temporary folder) also writes each array atomically."""
    out = tmp_path / "glyphs"
    write_blobs(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    fail_write_bytes(monkeypatch, when=lambda path: "train_labels" in path.name)
    with pytest.raises(Killed):
        write_dataset(out, "glyphs", {"train": (np.zeros((2, 1, 4, 4), np.uint8), np.arange(2), ["a", "b"])},
                      source={})
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after.keys() == before.keys()  # no temporary left behind
    assert after["train_labels.npy"] == before["train_labels.npy"] and after["manifest.json"] == before["manifest.json"]


def test_a_rerun_removes_the_temporaries_a_killed_run_left(cfg, blobs_root, tmp_path):
    out, ckpt = tmp_path / "out", tmp_path / "work" / "run.pt"
    for folder in (out, ckpt.parent):
        folder.mkdir()
    stale = [out / f".{MODEL_FILE}.k1ll3d.tmp", out / f".{LAMBDAS_FILE}.k1ll3d.tmp", ckpt.parent / ".run.pt.k1ll3d.tmp"]
    others = [out / ".notes.txt.k1ll3d.tmp", ckpt.parent / ".other-run.pt.k1ll3d.tmp"]  # not this run's files
    for path in stale + others:
        path.write_bytes(b"half")
    train(cfg, RUN, blobs_root / "glyphs", out, ckpt, progress=False)
    assert not any(path.exists() for path in stale) and all(path.exists() for path in others)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        p.name for p in output_files(out))
