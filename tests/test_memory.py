"""lab4.memory.keep_freed_memory: inside the block a large buffer comes from the heap and stays
there when freed (ready for the next step, no page faults); with glibc's defaults it is mmap'd
and handed back to the kernel on free. Read off glibc's own accounting (mallinfo2)."""
import ctypes

import pytest
import torch

from lab4.memory import _glibc, keep_freed_memory

LIBC = _glibc()
pytestmark = pytest.mark.skipif(LIBC is None or not hasattr(LIBC, "mallinfo2"), reason="glibc >= 2.33 only")
SIZE = 64 * 1024 * 1024                   # bytes: above glibc's largest automatic mmap threshold (32 MiB)


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def mallinfo() -> MallInfo2:
    LIBC.mallinfo2.restype = MallInfo2
    return LIBC.mallinfo2()


def allocate_and_free() -> tuple[int, int]:
    """(bytes mmap'd while a 64 MiB tensor is alive, free bytes kept in the heap after it is freed)"""
    before = mallinfo().hblkhd
    t = torch.empty(SIZE // 4).fill_(1.0)
    mmapped = mallinfo().hblkhd - before
    del t
    return mmapped, mallinfo().fordblks


def test_inside_the_block_freed_memory_stays_in_the_heap():
    with keep_freed_memory() as applied:
        assert applied
        mmapped, kept = allocate_and_free()
    assert mmapped < SIZE and kept >= SIZE, (mmapped, kept)


def test_glibc_defaults_outside_and_when_disabled():
    with keep_freed_memory(False) as applied:
        assert not applied
        mmapped, _ = allocate_and_free()
        assert mmapped >= SIZE                # its own mapping, unmapped again on free
    mmapped, _ = allocate_and_free()          # after a block: the defaults are back
    assert mmapped >= SIZE
