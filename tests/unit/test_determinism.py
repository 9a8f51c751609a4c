"""Same seed, same bytes: through the CLI on CPU, with the determinism flags set in one place.
Concurrent evaluations read the same preprocessed arrays, memory-mapped read-only."""
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


def in_both(folders, *args: str) -> None:
    """Run the same `metalr` command in every folder at once."""
    procs = [subprocess.Popen([sys.executable, "-m", "metalr.cli", *args], cwd=folder, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for folder in folders]
    outputs = [p.communicate()[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs


@pytest.fixture(scope="module")
def twice(tmp_path_factory, blobs_root):
    """The tiny run trained, then evaluated, in two folders; the two evaluations run concurrently and
    read the same memory-mapped arrays."""
    folders = [tmp_path_factory.mktemp(name) for name in ("first", "second")]
    for folder in folders:
        write_config(folder, blobs_root)
    in_both(folders, "tasks", *CONFIG, "--dataset", "glyphs", "--ways", "3", "--shots", "1")
    in_both(folders, "train", *CONFIG, "--run", RUN_ID, "--no-progress")
    in_both(folders, "evaluate", *CONFIG, "--run", RUN_ID, "--no-progress", "--out", "metrics.json")
    return folders


def test_same_seed_gives_byte_identical_model_and_metrics_evaluated_concurrently(twice):
    first, second = twice
    assert (first / "metrics.json").read_bytes() == (second / "metrics.json").read_bytes()
    assert (first / MODEL).read_bytes() == (second / MODEL).read_bytes()


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
