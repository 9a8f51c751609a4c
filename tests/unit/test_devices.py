"""GPU assignment on a multi-GPU machine, and device resolution (no GPU needed)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from metalr import devices
from metalr.devices import NoFreeGPU, claim_gpu, pin_local_gpu, resolve_device


def test_concurrent_claims_get_distinct_gpus_and_a_released_gpu_is_reused(tmp_path):
    claims = [claim_gpu(tmp_path, 3) for _ in range(3)]
    assert [c.index for c in claims] == [0, 1, 2]
    with pytest.raises(NoFreeGPU, match="--resources gpu=3"):
        claim_gpu(tmp_path, 3)
    claims[1].handle.close()
    assert claim_gpu(tmp_path, 3).index == 1


def test_a_claim_held_by_another_process_is_skipped_and_freed_when_it_dies(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from metalr.devices import claim_gpu;"
         f"c = claim_gpu(Path({str(tmp_path)!r}), 2); print(c.index, flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "0"
        mine = claim_gpu(tmp_path, 2)
        assert mine.index == 1
        mine.handle.close()
    finally:
        holder.kill()
        holder.wait()
    assert claim_gpu(tmp_path, 2).index == 0  # the killed holder's lock went with it


def test_pinning_sets_cuda_visible_devices_only_when_no_scheduler_did(tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "local_gpu_count", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    first = pin_local_gpu(tmp_path)
    assert first.index == 0 and os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    second = pin_local_gpu(tmp_path)
    assert second.index == 1 and os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")  # e.g. granted by SLURM
    assert pin_local_gpu(tmp_path) is None and os.environ["CUDA_VISIBLE_DEVICES"] == "5"


def test_single_gpu_or_cpu_machines_are_not_pinned(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    for count in (0, 1):
        monkeypatch.setattr(devices, "local_gpu_count", lambda count=count: count)
        assert pin_local_gpu(tmp_path) is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_device_resolution(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(RuntimeError, match="sees no GPU"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="compute.device"):
        resolve_device("tpu")
