"""One place for seeds, thread counts, determinism flags and the run's environment record."""
from __future__ import annotations

import os
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


# cuBLAS reuses workspace buffers nondeterministically unless told their size (CUDA docs,
# "Reproducibility"); the variable must be set before the first cuBLAS call.
CUBLAS_WORKSPACE = ":4096:8"


def configure_torch(threads: int, deterministic: bool) -> None:
    """Thread count and PyTorch's determinism flags (config key ``deterministic``), for train and evaluate.

    ``deterministic: true`` makes ops without a deterministic kernel raise instead of silently varying;
    ``false`` lets cuDNN pick its fastest (benchmarked, possibly nondeterministic) kernels.
    """
    torch.set_num_threads(threads)
    if deterministic and torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def environment(device: str = "cpu") -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:
        metalr_version = version("metalr")
    except PackageNotFoundError:  # run from a source tree (PYTHONPATH), not installed: say so in the record
        metalr_version = "not installed (run from a source tree)"
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": str(torch.__version__),  # a plain str: TorchVersion is no type a weights-only load accepts
        "numpy": np.__version__,
        "metalr": metalr_version,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
    }
