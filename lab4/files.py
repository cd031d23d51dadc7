"""Atomic writes: every file lab4 writes appears whole or not at all."""
from __future__ import annotations

import os
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
