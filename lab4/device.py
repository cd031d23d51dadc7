"""Which device a run uses, and the one-line errors for the ways a device fails."""
from __future__ import annotations

from contextlib import contextmanager

import torch

from .config import CHOICES
from .errors import Lab4Error


def select_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """--device: auto (CUDA when present, else CPU), cpu, cuda or cuda:<n> of a GPU that exists.
    local_rank (torchrun): auto and cuda mean this process's GPU, cuda:<local rank>."""
    if local_rank is not None and name in ("auto", "", None, "cuda") and torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        name = f"cuda:{local_rank}"
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


def device_words(device: torch.device) -> str:
    """' (NVIDIA H100, compute capability 9.0)' for a GPU, '' for the CPU: the first log line's."""
    if device.type != "cuda":
        return ""
    major, minor = torch.cuda.get_device_capability(device)
    return f" ({torch.cuda.get_device_name(device)}, compute capability {major}.{minor})"


def choose_precision(requested: str, device: torch.device, amp: bool = True, cpu_amp: bool = False,
                     capability: tuple[int, int] | None = None) -> str:
    """--precision -> the training precision on `device`: fp32, bf16 (autocast) or fp16 (autocast
    with a GradScaler). auto: on CUDA, bf16 from compute capability 8.0 (Ampere and later), fp16
    on 7.x (V100, T4: no native bfloat16), fp32 below (P100) or with --no-amp; on the CPU fp32,
    or bf16 with --cpu_amp. `capability` stands in for the GPU's (tests)."""
    if requested not in CHOICES["precision"]:
        raise Lab4Error(f"--precision {requested!r}: expected one of {', '.join(CHOICES['precision'])}")
    if device.type != "cuda":
        if requested == "fp16":
            raise Lab4Error("--precision fp16: for CUDA GPUs only (on the CPU: fp32, or bf16 = --cpu_amp)")
        return ("bf16" if cpu_amp else "fp32") if requested == "auto" else requested
    cap = tuple(capability or torch.cuda.get_device_capability(device))
    if requested == "auto":
        return "fp32" if not amp else "bf16" if cap >= (8, 0) else "fp16" if cap >= (7, 0) else "fp32"
    if requested == "bf16" and cap < (8, 0):
        raise Lab4Error(f"--precision bf16: {device} has compute capability {cap[0]}.{cap[1]}, without native "
                        f"bfloat16 (8.0 and later); use --precision auto (fp16 there) or fp32")
    return requested


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str):
    """The one autocast context of lab4: fp32 (disabled), bf16 or fp16 on `device`. Training uses its
    chosen precision (`choose_precision`); rollouts use `rollout_precision`."""
    dtype = AUTOCAST_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def rollout_precision(device: torch.device, cpu_amp: bool) -> str:
    """Rollouts (validation, lab4-test): bf16 on the CPU with --cpu_amp (opt-in: ~1.9x on CPUs with
    AVX512-BF16/AMX, slower without; it changes the numerics), else fp32. CUDA rollouts stay fp32:
    cheap on a GPU, and the score is measured on them."""
    return "bf16" if cpu_amp and device.type == "cpu" else "fp32"
