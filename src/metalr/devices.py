"""Which device a job runs on, and which GPU it gets on a multi-GPU machine.

Snakemake's `gpu` resource limits how many GPU jobs run at once; it does not say which GPU each one
uses. On a local multi-GPU machine each job therefore claims one GPU by an exclusive, non-blocking
lock on ``<lock_dir>/gpu<i>.lock`` and hides the others with CUDA_VISIBLE_DEVICES. Under a batch
scheduler (SLURM sets CUDA_VISIBLE_DEVICES for the GPUs it granted) the job keeps what it was given.
The lock is released by the operating system when the process ends, however it ends.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

DEVICES = ("auto", "cpu", "cuda")


class NoFreeGPU(RuntimeError):
    """Every GPU is claimed by another job: more GPU jobs run than the `gpu` resource allows."""


@dataclass
class GPUClaim:
    index: int
    handle: IO  # keep open: closing it releases the claim


def resolve_device(setting: str) -> str:
    """'auto' -> 'cuda' when PyTorch sees a GPU, else 'cpu'; 'cuda' without a GPU is an error."""
    import torch

    if setting not in DEVICES:
        raise ValueError(f"compute.device must be one of {list(DEVICES)}, got {setting!r}")
    available = torch.cuda.is_available()
    if setting == "cuda" and not available:
        raise RuntimeError("compute.device is 'cuda' but PyTorch sees no GPU; use 'auto' or 'cpu'")
    return "cuda" if setting == "cuda" or (setting == "auto" and available) else "cpu"


def cuda_peak_mib(work: Callable[[], Any]) -> float:
    """Peak CUDA memory allocated while ``work`` runs, above what was allocated before it, in MiB."""
    import torch

    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    work()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def claim_gpu(lock_dir: Path, gpu_count: int) -> GPUClaim:
    """Claim the lowest-numbered free GPU among ``gpu_count`` for the life of this process."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    for index in range(gpu_count):
        handle = open(lock_dir / f"gpu{index}.lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return GPUClaim(index, handle)
    raise NoFreeGPU(f"all {gpu_count} GPUs are claimed (locks in {lock_dir}); run Snakemake with "
                    f"--resources gpu={gpu_count} so it starts at most one GPU job per GPU")


def local_gpu_count() -> int:
    """GPUs on this machine, counted without initialising CUDA in this process (that would fix
    the visible devices before CUDA_VISIBLE_DEVICES is set)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
    return sum(line.startswith("GPU ") for line in listing.splitlines())


def pin_local_gpu(lock_dir: Path) -> GPUClaim | None:
    """Give this process one GPU of a multi-GPU machine, unless a scheduler already chose."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return None
    count = local_gpu_count()
    if count <= 1:
        return None
    claim = claim_gpu(lock_dir, count)
    os.environ["CUDA_VISIBLE_DEVICES"] = str(claim.index)
    return claim
