"""The progress-bar switch: every bar lab4 draws (decoding, training epochs, rollouts) is a tqdm bar
made here, and one switch turns them all off: `--no-progress` on a command line, LAB4_PROGRESS=0 in
the environment (benchmarks, tests, CI logs), or `set_progress(False)` in a notebook."""
from __future__ import annotations

import os

from tqdm.auto import tqdm

PROGRESS_ENV = "LAB4_PROGRESS"
_forced: bool | None = None          # set_progress(); None: the environment decides


def progress_enabled() -> bool:
    """False when set_progress(False) was called or LAB4_PROGRESS is 0/false/no/off."""
    if _forced is not None:
        return _forced
    return os.environ.get(PROGRESS_ENV, "").strip().lower() not in ("0", "false", "no", "off")


def set_progress(enabled: bool | None) -> None:
    """Turn every lab4 progress bar on or off in this process (None: back to LAB4_PROGRESS)."""
    global _forced
    _forced = enabled


def progress_bar(iterable=None, *, show: bool = True, **kwargs) -> tqdm:
    """tqdm(iterable, **kwargs), drawn only when `show` and the switch allow it."""
    return tqdm(iterable, disable=not (show and progress_enabled()), **kwargs)
