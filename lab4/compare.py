"""Trained runs compared on the validation video (notebook 06): each run's checkpoint rolled out
K times with z sampled from its prior (seeds seed..seed+K-1) and once with z = the prior's mean,
scored frame by frame (PSNR as Kaggle, SSIM beside it).

    per_frame, summary = compare_runs({"fixed prior": "runs/a/last.ckpt", ...}, val, samples=4)
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .checkpoint import load_model
from .infer import kaggle_mean, sample_spread, validate, validate_samples
from .score import ssim_per_frame


def compare_runs(checkpoints: dict, val, length: int = 630, samples: int = 4, seed: int = 1,
                 device: str = "cpu") -> tuple[pd.DataFrame, pd.DataFrame]:
    """{name: checkpoint path} -> (per_frame, summary).
    per_frame: one row per (run, z, seed, frame) with psnr and ssim (z "sample" rows for each of
    the K seeds, "mean" rows once, seed -1), frames 0..T-1 of the val video.
    summary: one row per run: the Kaggle-protocol val PSNR of the --seed rollout, the mean, std,
    best and worst over the K samples, the z = mean rollout's, and the mean SSIM of both."""
    frames, rows = [], []
    seeds = [seed + k for k in range(samples)]
    for name, path in checkpoints.items():
        model, cfg, _ = load_model(path, device)
        preds, psnrs = validate_samples(model, val, length, seeds)                 # (K, T, 3, H, W), (K, T)
        mean_pred, mean_psnr = validate(model, val, length, z_mode="mean")         # (T, 3, H, W), (T,)
        gt = val.images[:len(mean_psnr)]
        ssims = [ssim_per_frame(p, gt) for p in preds]
        mean_ssim = ssim_per_frame(mean_pred, gt)
        for s, psnr, ssim in zip(seeds, psnrs, ssims):
            frames.append(_frame_rows(name, "sample", s, psnr, ssim))
        frames.append(_frame_rows(name, "mean", -1, mean_psnr, mean_ssim))
        spread = sample_spread(psnrs, seeds)["val_psnr"]
        rows.append({"run": name, "prior": cfg.prior, "val PSNR (seed)": spread.iloc[0],
                     f"mean of {samples}": spread.mean(), "std": spread.std(ddof=0), "best": spread.max(),
                     "worst": spread.min(), "z = mean": kaggle_mean(mean_psnr),
                     "SSIM (seed)": kaggle_mean(ssims[0]), "SSIM, z = mean": kaggle_mean(mean_ssim)})
    return pd.concat(frames, ignore_index=True), pd.DataFrame(rows).set_index("run")


def _frame_rows(run: str, z: str, seed: int, psnr: np.ndarray, ssim: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"run": run, "z": z, "seed": seed, "frame": np.arange(len(psnr)), "psnr": psnr, "ssim": ssim})


def copy_first_rows(val, length: int = 630) -> pd.DataFrame:
    """The copy-first-frame baseline's per-frame PSNR and SSIM, as one more 'run'."""
    from .infer import copy_first_psnr, copy_first_ssim
    return _frame_rows("copy first frame", "-", -1, copy_first_psnr(val, length), copy_first_ssim(val, length))
