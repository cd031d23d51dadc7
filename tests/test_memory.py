"""lab4.memory.keep_freed_memory (what the `lab4-train` command does first): afterwards a large
buffer comes from the heap and stays there when freed, ready for the next step; with glibc's
defaults it is mmap'd and handed back to the kernel on free. Each case runs in a fresh Python
process (the setting is process-wide) and reads glibc's own accounting (mallinfo2)."""
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lab4.memory import _glibc

LIBC = _glibc()
pytestmark = pytest.mark.skipif(LIBC is None or not hasattr(LIBC, "mallinfo2"), reason="glibc >= 2.33 only")

PROBE = """
import ctypes, sys, torch
from lab4.memory import keep_freed_memory
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
SIZE = 64 * 1024 * 1024                       # above glibc's largest adaptive mmap threshold (32 MiB)
before = libc.mallinfo2().hblkhd
t = torch.empty(SIZE // 4).fill_(1.0)
mmapped = libc.mallinfo2().hblkhd - before
del t
print(applied, mmapped, libc.mallinfo2().fordblks)
"""
SIZE = 64 * 1024 * 1024


def probe(mode: str) -> tuple[bool, int, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True).stdout
    applied, mmapped, kept = out.split()
    return applied == "True", int(mmapped), int(kept)


@pytest.mark.slow
def test_after_keep_freed_memory_a_freed_buffer_stays_in_the_heap():
    applied, mmapped, kept = probe("keep")
    assert applied
    assert mmapped < SIZE and kept >= SIZE, (mmapped, kept)


@pytest.mark.slow
def test_glibc_defaults_map_and_unmap_it():
    applied, mmapped, kept = probe("default")
    assert not applied
    assert mmapped >= SIZE and kept < SIZE, (mmapped, kept)


def test_the_lab4_train_command_sets_it_and_main_does_not(monkeypatch):
    scripts = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["lab4-train"] == "lab4.cli:train_command"
    import lab4.cli as cli
    import lab4.memory
    import lab4.train
    # train() and train_main() leave the allocator alone (notebook kernels and tests call them in-process)
    assert "keep_freed_memory" not in cli.train_main.__code__.co_names
    assert "keep_freed_memory" not in lab4.train.train.__code__.co_names
    calls = []
    monkeypatch.setattr(lab4.memory, "keep_freed_memory", lambda: calls.append("keep") or True)
    monkeypatch.setattr(cli, "train_main", lambda argv=None, **kw: calls.append("main") or 0)
    assert cli.train_command() == 0
    assert calls == ["keep", "main"]
