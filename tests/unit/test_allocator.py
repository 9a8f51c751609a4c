"""compute.cpu_allocator: 'retain' keeps freed memory in the process, 'system' gives it back."""
from __future__ import annotations

import platform

import pytest

from metalr import allocator
from metalr.bench import in_subprocess

BLOCK_MIB = 256


def resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


def resident_growth_after_a_freed_block(setting: str) -> float:
    """In a fresh process: resident memory after one large block was written and freed, less before."""
    import torch

    allocator.configure(setting)
    before = resident_mib()
    block = torch.ones(BLOCK_MIB * 2**20 // 4)
    del block
    return resident_mib() - before


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting tunes glibc's malloc")
def test_retain_keeps_a_freed_block_resident_and_system_returns_it():
    assert in_subprocess(resident_growth_after_a_freed_block, "retain") > 0.9 * BLOCK_MIB
    assert in_subprocess(resident_growth_after_a_freed_block, "system") < 0.1 * BLOCK_MIB


def test_an_unknown_setting_names_the_config_key():
    with pytest.raises(ValueError, match="compute.cpu_allocator"):
        allocator.configure("jemalloc")


def test_retain_without_glibc_is_an_error_not_a_silent_fallback(monkeypatch):
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    with pytest.raises(RuntimeError, match="compute.cpu_allocator: system"):
        allocator.configure("retain")
    allocator.configure("system")  # needs nothing from the platform
