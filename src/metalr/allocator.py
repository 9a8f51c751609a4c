"""Where large CPU tensors get their memory (``compute.cpu_allocator``).

glibc's malloc serves every block above its mmap threshold (at most 32 MiB; a few hundred KiB after
start-up) with a fresh ``mmap`` and unmaps it when it is freed. A second-order meta-iteration
allocates and frees hundreds of such activations, so each one page-faults its memory in again:
at 84x84 1-shot that was a quarter of a MAML meta-iteration on this project's 2-core CPU
(docs/profile-cpu.md). ``retain`` switches that off for the process: blocks come from the heap
(``M_MMAP_MAX`` = 0) and freed memory stays there for reuse (``M_TRIM_THRESHOLD`` at its maximum),
so the resident memory stays near its peak instead of going back to the system between iterations.
``system`` leaves glibc's defaults. The setting acts on allocations made after it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform

ALLOCATORS = ("retain", "system")
# From glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
INT_MAX = 2**31 - 1


def configure(setting: str) -> None:
    """Apply ``compute.cpu_allocator`` to this process."""
    if setting not in ALLOCATORS:
        raise ValueError(f"compute.cpu_allocator must be one of {list(ALLOCATORS)}, got {setting!r}")
    if setting == "system":
        return
    mallopt = _glibc_mallopt()
    if mallopt is None:
        raise RuntimeError(f"compute.cpu_allocator is 'retain', which tunes glibc's malloc, but this platform "
                           f"({platform.system()}, libc {platform.libc_ver()[0] or 'unknown'}) has no glibc; "
                           f"set compute.cpu_allocator: system")
    for option, value in ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, INT_MAX)):
        if mallopt(option, value) != 1:
            raise RuntimeError(f"glibc mallopt({option}, {value}) failed; set compute.cpu_allocator: system")


def _glibc_mallopt():
    if platform.libc_ver()[0] != "glibc":
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt
