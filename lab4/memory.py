"""Keep freed memory in the process during CPU training (Linux, glibc).

A full-size training step on the CPU allocates about 4 GB of activations and frees them again.
With glibc's default (adaptive) thresholds much of it is handed back to the kernel (heap trims,
unmapped blocks) and faulted in again, page by page, on the next step: ~0.5 million page faults
per step, ~12% of the step time in a fresh `lab4-train` process (benchmarks/RESULTS.md, section
2). Fixed, high mmap and trim thresholds keep the blocks in the heap for the next step.

This is process-wide and glibc cannot switch its adaptive thresholds back on, so only the
`lab4-train` command calls it (its process ends with the training); `lab4.train.train()` called
from a notebook leaves the kernel's allocator alone. The maths is untouched.
"""
from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3      # mallopt parameter numbers (malloc.h)
KEEP_MMAP_THRESHOLD = 1 << 30                    # blocks below 1 GiB come from the heap
KEEP_TRIM_THRESHOLD = (1 << 31) - 1              # never trim the heap top (the largest int)


def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Set this process's glibc thresholds so freed blocks stay in the heap. Returns whether it
    applied (False off Linux/glibc)."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, KEEP_MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD))
