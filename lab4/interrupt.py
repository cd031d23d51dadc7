"""Ctrl-C during training: the loop stops at the next step boundary, so a checkpoint never holds
half a step, and `TrainingInterrupted` carries the checkpoint that holds the run."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from pathlib import Path


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; `saved` is the checkpoint that holds the run (None: none yet)."""

    def __init__(self, saved: Path | None):
        super().__init__()
        self.saved = saved


class SigintFlag(threading.Event):
    """Within `with SigintFlag()`, Ctrl-C sets this flag; the loop stops at the next step
    boundary (so a checkpoint never holds half a step). A second Ctrl-C interrupts at once,
    except inside `shielded()` blocks (applying a step, writing checkpoints), which finish
    first. The previous handler is back on any exit, an exception's included."""

    def __init__(self):
        super().__init__()
        self._old, self._shield_depth, self._done = None, 0, False
        self.process_exits_after = False     # the CLI: once saved, ignore Ctrl-C until the process ends

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        self.restore()

    @contextmanager
    def shielded(self):
        self._shield_depth += 1
        try:
            yield
        finally:
            self._shield_depth -= 1

    def ignore_more(self):
        """The run is saved and on its way out: further Ctrl-Cs change nothing."""
        self._done = True

    def _handle(self, signum, frame):
        if self.is_set() and not self._shield_depth and not self._done:
            raise KeyboardInterrupt
        self.set()

    def restore(self):
        if self._old is not None:
            keep_ignoring = self._done and self.process_exits_after   # a late press: no traceback at exit
            signal.signal(signal.SIGINT, signal.SIG_IGN if keep_ignoring else self._old)
            self._old = None
