"""Keep freed memory in the process during CPU training (Linux, glibc).

A full-size training step on the CPU allocates about 4 GB of activations and frees them again.
glibc hands large freed blocks back to the kernel (mmap'd blocks, and the heap top beyond 128 KiB),
so the next step faults every page in again: about 3 million page faults per 6 steps, ~12% of the
step time (benchmarks/RESULTS.md, section 2). Raising glibc's mmap and trim thresholds keeps the
blocks in the heap for reuse. The maths is untouched; only where the bytes live changes.
"""
from __future__ import annotations

import ctypes
import platform
from contextlib import contextmanager
from typing import Iterator

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3      # mallopt parameter numbers (malloc.h)
GLIBC_DEFAULT = 128 * 1024                       # both thresholds' documented defaults
KEEP_MMAP_THRESHOLD = 1 << 30                    # blocks below 1 GiB come from the heap
KEEP_TRIM_THRESHOLD = (1 << 31) - 1              # never trim the heap top while training


def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


@contextmanager
def keep_freed_memory(enabled: bool = True) -> Iterator[bool]:
    """Within the block, freed blocks stay in the heap (no give-back, no page faults on reuse);
    on exit glibc's default thresholds come back and the heap is trimmed. Yields whether it
    applied (False off Linux/glibc or when disabled)."""
    libc = _glibc() if enabled else None
    if libc is None:
        yield False
        return
    ok = bool(libc.mallopt(M_MMAP_THRESHOLD, KEEP_MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD))
    try:
        yield ok
    finally:
        libc.mallopt(M_MMAP_THRESHOLD, GLIBC_DEFAULT)
        libc.mallopt(M_TRIM_THRESHOLD, GLIBC_DEFAULT)
        libc.malloc_trim(0)
