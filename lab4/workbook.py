"""Small helpers that the workbook's notebooks (notebooks/*.ipynb) share, so that their cells show
the lab rather than plumbing. Importing this module is cheap (torch loads on first use)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .config import PRESETS, TrainConfig, smoke_mode

# What the test switch (LAB4_SMOKE=1, as `make test` sets it) changes in each notebook's parameter
# cell: the smoke preset on the mini synthetic data, runs under runs/smoke/ (never the user's runs),
# figures saved to runs/smoke/figures (the saving is exercised, the README's figures stay untouched).
_SMOKE = PRESETS["smoke"]
_ON_MINI = dict(PRESET="smoke", DR="../data/synth-mini", SYNTH="mini")
_SHORT_RUNS = dict(NUM_EPOCH=_SMOKE["num_epoch"], STEPS_PER_EPOCH=_SMOKE["steps_per_epoch"], REUSE=False,
                   FIGURES_DIR="../runs/smoke/figures")
SMOKE_PARAMS: dict[str, dict] = {
    "00_cvae_derivation": dict(N_DIM=_SMOKE["N_dim"], H=16, W=32, MC_SAMPLES=256),
    "01_data": _ON_MINI,
    # 3 epochs: Cyclical beta 0, 1, 0; Monotonic 0, 0.5, 1
    "02_kl_annealing": dict(_ON_MINI, **_SHORT_RUNS, SAVE_ROOT="../runs/smoke/kl_annealing", KL_CYCLES=2, KL_RATIO=1.0),
    # 3 epochs: tfr 1.0, 0.5, 0.0
    "03_teacher_forcing": dict(_ON_MINI, **_SHORT_RUNS, SAVE_ROOT="../runs/smoke/teacher_forcing", TFR=1.0, TFR_SDE=1,
                               TFR_D_STEP=0.5),
    # 04 and 05 each train their own smoke checkpoint: `make test` may run them at the same time (pytest-xdist)
    "04_psnr_per_frame": dict(_ON_MINI, CKPT="../runs/smoke/model/last.ckpt", SAVE_ROOT="../runs/smoke/psnr_per_frame",
                              RETRAIN=True, VAL_LEN=_SMOKE["val_vi_len"], FIGURES_DIR="../runs/smoke/figures"),
    "05_kaggle_submission": dict(_ON_MINI, CKPT="../runs/smoke/submission_model/last.ckpt",
                                 SAVE_ROOT="../runs/smoke/submission"),
    # nine runs: 2 epochs (tfr 1.0 then 0.0) of 2 steps each keep the notebook's smoke test short
    "06_training_strategies": dict(_ON_MINI, **dict(_SHORT_RUNS, NUM_EPOCH=2, STEPS_PER_EPOCH=2),
                                   SAVE_ROOT="../runs/smoke/strategies", SAMPLES=2, VAL_LEN=24),
}


def smoke_setup(params: dict, notebook: str) -> bool:
    """The set-up cell of every notebook, right after its parameter cell: reads the one test switch
    (`lab4.smoke_mode()`, LAB4_SMOKE=1) and, when it is on, sets the notebook's parameters in
    `params` (the notebook's `globals()`) to SMOKE_PARAMS[notebook]; then, where the notebook has a
    dataset root DR, makes sure the dataset exists (ensure_dataset(DR, SYNTH)). Returns whether
    smoke mode is on. A smoke value for a name the parameter cell does not define is an error."""
    if notebook not in SMOKE_PARAMS:
        raise ValueError(f"smoke_setup: unknown notebook {notebook!r}; expected one of {', '.join(SMOKE_PARAMS)}")
    smoke = smoke_mode()
    if smoke:
        missing = sorted(set(SMOKE_PARAMS[notebook]) - set(params))
        if missing:
            raise ValueError(f"smoke_setup({notebook!r}): the parameter cell defines no {', '.join(missing)}")
        params.update(SMOKE_PARAMS[notebook])
    if "DR" in params:
        ensure_dataset(params["DR"], params.get("SYNTH"))
    return smoke


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


def train_or_load(cfg: TrainConfig, reuse: bool = True, progress: bool = True):
    """The metrics (a DataFrame) of a finished run of exactly this config in cfg.save_root (same
    config.json, all epochs present); otherwise train it. Lets notebooks re-run without re-training."""
    import pandas as pd
    from .device import choose_precision, select_device
    from .train import train
    run = Path(cfg.save_root)
    if reuse and (run / "config.json").is_file() and (run / "metrics.csv").is_file():
        done = pd.read_csv(run / "metrics.csv")
        saved = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))  # newer fields: defaults
        wanted = dataclasses.replace(cfg, precision=choose_precision(cfg.precision, select_device(cfg.device),
                                                                     cfg.amp, cfg.cpu_amp))   # as config.json has it
        if saved.to_dict() == wanted.to_dict() and len(done) == cfg.num_epoch:
            print(f"{run}: finished run found, reusing it (reuse=False trains again)")
            return done
    return train(cfg, progress=progress)["metrics"]
