"""Writing files: every file lab4 writes appears whole or not at all, and a run folder reused with
--overwrite keeps its old run aside."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import Lab4Error


@contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, so writers that infer the format from
    it still work); when the block succeeds, rename it over `path`; otherwise remove it. A write
    that fails (disk full, no permission) is one Lab4Error line; an earlier file stays as it was."""
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        raise Lab4Error(f"{path}: could not be written ({e.strerror or e}); "
                        f"any earlier {path.name} is as it was") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def move_old_run_aside(save_root: Path, log=print) -> Path | None:
    """--overwrite: the old run's files go into save_root/previous-<time>/ before anything new is
    written, so that no old best.ckpt, epoch=<N>.ckpt or val/ is taken for the new run's."""
    old = [p for p in save_root.iterdir() if not p.name.startswith("previous-")] if save_root.is_dir() else []
    if not old:
        return None
    aside = save_root / f"previous-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while aside.exists():
        aside, n = save_root / f"previous-{time.strftime('%Y%m%d-%H%M%S')}-{n}", n + 1
    aside.mkdir()
    for p in old:
        p.rename(aside / p.name)
    log(f"lab4-train: --overwrite: moved the previous run ({len(old)} entries) to {aside}")
    return aside
