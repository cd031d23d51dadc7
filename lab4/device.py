"""Which device a run uses, and the one-line errors for the ways a device fails."""
from __future__ import annotations

from contextlib import contextmanager

import torch

from .errors import Lab4Error


def select_device(name: str = "auto") -> torch.device:
    """--device: auto (CUDA when present, else CPU), cpu, cuda or cuda:<n> of a GPU that exists."""
    if name in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise Lab4Error(f"--device {name!r}: expected auto, cpu, cuda or cuda:<n>") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise Lab4Error(f"--device {name}: CUDA is not available on this machine (use --device auto or cpu)")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise Lab4Error(f"--device {name}: this machine has {count} GPU{'s' if count != 1 else ''} "
                            f"(cuda:0{f'..cuda:{count - 1}' if count > 1 else ''})")
    elif device.type != "cpu":
        raise Lab4Error(f"--device {name!r}: expected auto, cpu, cuda or cuda:<n>")
    return device


@contextmanager
def out_of_memory_as_error(what: str):
    """Within the block, CUDA's out-of-memory error becomes one line saying what to lower."""
    try:
        yield
    except torch.OutOfMemoryError:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise Lab4Error(f"CUDA out of memory {what}") from None
