"""One place for seeds, thread counts and the run's environment record."""
from __future__ import annotations

import platform
import sys

import numpy as np
import torch

# Distinct streams per purpose, so adding draws to one never shifts another.
STREAM_INIT = 0
STREAM_TRAIN_TASKS = 1


def torch_generator(seed: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, stream]).generate_state(1)[0]))


def numpy_rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def configure_torch(threads: int) -> None:
    torch.set_num_threads(threads)


def environment(device: str = "cpu") -> dict:
    from importlib.metadata import version

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "metalr": version("metalr"),
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
    }
