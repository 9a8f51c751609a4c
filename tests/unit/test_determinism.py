"""Same seed, same bytes: through the CLI on CPU, with the determinism flags set in one place.
Evaluations of several runs read the same memory-mapped arrays at once, read-only."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from metalr import seeding
from metalr.data.arrays import load_split
from tests.unit.synthetic import RUN_ID, write_config

CONFIG = ("--configfile", "tiny.yaml")
MODEL = f"results/unit/models/{RUN_ID}/model.pt"
TASKS = "results/unit/tasks/glyphs/3w1s.json"


def pipeline(folder) -> subprocess.Popen:
    """tasks, train and evaluate of the tiny run, one after the other, in the background."""
    cli = f"{sys.executable} -m metalr.cli"
    steps = [f"{cli} tasks {' '.join(CONFIG)} --dataset glyphs --ways 3 --shots 1",
             f"{cli} train {' '.join(CONFIG)} --run {RUN_ID} --no-progress",
             f"{cli} evaluate {' '.join(CONFIG)} --run {RUN_ID} --no-progress --out metrics.json"]
    return subprocess.Popen(" && ".join(steps), shell=True, cwd=folder, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(*procs: subprocess.Popen) -> None:
    outputs = [p.communicate()[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs


@pytest.fixture(scope="module")
def twice(tmp_path_factory, blobs_root):
    folders = [tmp_path_factory.mktemp(name) for name in ("first", "second")]
    for folder in folders:
        write_config(folder, blobs_root)
    finish(*map(pipeline, folders))
    return folders


def test_same_seed_gives_byte_identical_metrics(twice):
    first, second = twice
    assert (first / "metrics.json").read_bytes() == (second / "metrics.json").read_bytes()
    assert (first / MODEL).read_bytes() == (second / MODEL).read_bytes()


def test_concurrent_evaluations_share_the_arrays(twice):
    folder = twice[0]
    procs = [subprocess.Popen([sys.executable, "-m", "metalr.cli", "evaluate", *CONFIG, "--run", RUN_ID,
                               "--no-progress", "--out", f"concurrent{i}.json"], cwd=folder,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    finish(*procs)
    reference = (folder / "metrics.json").read_bytes()
    assert all((folder / f"concurrent{i}.json").read_bytes() == reference for i in range(2))


def test_arrays_are_mapped_read_only(blobs_root):
    images = load_split(blobs_root / "glyphs", "train").images
    assert isinstance(images, np.memmap) and images.mode == "r"
    with pytest.raises(ValueError, match="read-only"):
        images[0, 0, 0, 0] = 1


@pytest.fixture
def restore_torch_flags(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark, torch.get_num_threads())
    yield
    torch.use_deterministic_algorithms(saved[0])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[1:3]
    torch.set_num_threads(saved[3])


@pytest.mark.parametrize("deterministic", [True, False])
@pytest.mark.parametrize("cuda", [True, False])
def test_determinism_flags_follow_the_config(restore_torch_flags, monkeypatch, deterministic, cuda):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    seeding.configure_torch(1, deterministic)
    assert torch.are_deterministic_algorithms_enabled() is deterministic
    assert torch.backends.cudnn.deterministic is deterministic
    assert torch.backends.cudnn.benchmark is not deterministic
    expected = seeding.CUBLAS_WORKSPACE if deterministic and cuda else None
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == expected
