"""Small helpers that the workbook's notebooks (notebooks/*.ipynb) share, so that their cells show
the lab rather than plumbing. Importing this module is cheap (no torch)."""
from __future__ import annotations

from pathlib import Path


def ensure_dataset(dr, synth: str | None) -> Path:
    """Make sure the dataset root `dr` holds a dataset; return it as a Path.

    With `synth` the name of a synthetic preset (`lab4.synth.PRESETS`: "mini", "demo", "full"),
    that preset is generated into `dr` when `dr` holds no complete dataset, i.e. no
    `test_solution.npy` (the generator writes it last, so an interrupted generation is redone).
    With `synth` None (the real Kaggle data, which has no test_solution.npy) nothing is done.
    """
    root = Path(dr)
    if synth and not (root / "test_solution.npy").is_file():
        from .synth import generate_dataset
        generate_dataset(root, preset=synth)
    return root
