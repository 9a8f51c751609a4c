"""A tiny synthetic dataset and config, and a runner for the `metalr` CLI in a scratch folder."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from metalr import cli
from metalr.data.arrays import write_dataset

# Small enough that a CLI train + evaluate takes about a second after start-up.
TINY = {
    "experiment": "unit",
    "model": {"filters": 4},
    "grid": {"algorithms": ["maml"], "rules": ["mlplr"], "ways": [3], "shots": [1]},
    "train": {"iterations": 6, "task_batch": 2, "inner_steps": 2, "queries": 2, "log_every": 2,
              "checkpoint_every": 3},
    "evaluate": {"tasks": 12, "inner_steps": 3, "queries": 3},
}
RUN_ID = "glyphs/3w1s/maml/mlplr/seed1"


def write_blobs(out: Path) -> Path:
    """Three splits of 16x16 images; each class is a bright square at its own position (learnable)."""
    rng = np.random.default_rng(0)
    splits = {}
    for offset, (split, classes) in enumerate((("train", 10), ("val", 5), ("test", 6))):
        labels = np.repeat(np.arange(classes), 8)
        images = rng.integers(0, 40, size=(len(labels), 1, 16, 16), dtype=np.uint8)
        for i, c in enumerate(labels):
            r, col = divmod((c * 5 + offset) % 16, 4)
            images[i, 0, r * 4:(r + 1) * 4, col * 4:(col + 1) * 4] = 255
        splits[split] = (images, labels, [f"{split}{c}" for c in range(classes)])
    write_dataset(out, "glyphs", splits, source={"kind": "synthetic"})
    return out


def write_config(folder: Path, data_root: Path, name: str = "tiny.yaml", **sections) -> Path:
    """TINY with ``sections`` merged one level deep; the dataset is read from ``data_root/glyphs``."""
    cfg = {key: dict(value) if isinstance(value, dict) else value for key, value in TINY.items()}
    cfg["data"] = {"root": str(data_root)}
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    path = folder / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def metalr(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "metalr.cli", *args], cwd=cwd, capture_output=True, text=True)


def metalr_popen(cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "metalr.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def tiny_project(folder: Path, blobs_root: Path, **sections) -> Path:
    """``folder`` as a project the CLI runs in: a copy of the blobs as data/glyphs, tiny.yaml, and the run
    trained, its task list drawn and evaluated by the CLI (in-process; the working directory is changed
    to ``folder`` and restored)."""
    shutil.copytree(blobs_root / "glyphs", folder / "data" / "glyphs")
    write_config(folder, Path("data"), **sections)
    before = Path.cwd()
    os.chdir(folder)
    try:
        for argv in (["train", "--run", RUN_ID, "--no-progress"],
                     ["tasks", "--dataset", "glyphs", "--ways", "3", "--shots", "1"],
                     ["evaluate", "--run", RUN_ID, "--no-progress"]):
            assert cli.main([argv[0], "--configfile", "tiny.yaml", *argv[1:]]) == 0, argv
    finally:
        os.chdir(before)
    return folder
