"""Evaluation on the validation video: the one path that training's validations, `lab4-train --test`,
`lab4-test --val` and the notebooks use.

The protocol is Kaggle's: from frame 0 only, roll out the video with z from the prior (z_mode
"sample"; "mean" takes the prior's mean), score frames 1..LAST_SCORED by PSNR (SSIM beside it).
Every rollout here is guarded: out of GPU memory and a NaN or infinite frame are one Lab4Error line,
and nothing is written from such a rollout. The copy-first-frame baseline (every frame predicted as
frame 0) is the do-nothing score a model must beat.

    pred, psnr = validate(model, val, seed=1)                  # (T, 3, H, W), (T,)
    per_frame, summary = compare_runs({"fixed prior": "runs/a/last.ckpt"}, val, samples=4)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .config import EARLY_FRAMES, LAST_SCORED, LATE_FRAMES, SEQ_LEN
from .data import Split
from .device import autocast, out_of_memory_as_error, rollout_precision
from .errors import Lab4Error
from .files import atomic_path
from .model import VideoCVAE
from .progress import progress_bar
from .score import psnr_per_frame, ssim_per_frame


# ---- scores ---------------------------------------------------------------------------------
def kaggle_mean(per_frame: np.ndarray) -> float:
    """Mean over frames 1..LAST_SCORED of a per-frame score (T,), as Kaggle scores a sequence."""
    return float(np.mean(per_frame[1:LAST_SCORED + 1]))


def drift(per_frame: np.ndarray) -> dict:
    """Where the rollout loses quality: the mean of a per-frame score (T,) over frames 1-150 ("early")
    and 451-600 ("late"), and early - late ("drift", in dB for PSNR). NaN for a rollout too short."""
    (a, b), (c, d) = EARLY_FRAMES, LATE_FRAMES
    if len(per_frame) <= d:
        return {"early": float("nan"), "late": float("nan"), "drift": float("nan")}
    early, late = float(np.mean(per_frame[a:b + 1])), float(np.mean(per_frame[c:d + 1]))
    return {"early": early, "late": late, "drift": early - late}


def drift_words(per_frame: np.ndarray) -> str:
    """'; frames 1-150 33.10, 451-600 30.80 dB (drift 2.30)', or '' for a rollout shorter than 601 frames."""
    d = drift(per_frame)
    if np.isnan(d["drift"]):
        return ""
    return (f"; frames {EARLY_FRAMES[0]}-{EARLY_FRAMES[1]} {d['early']:.2f}, {LATE_FRAMES[0]}-{LATE_FRAMES[1]} "
            f"{d['late']:.2f} dB (drift {d['drift']:.2f})")


def copy_first_psnr(val: Split, length: int = SEQ_LEN) -> np.ndarray:
    """Per-frame PSNR (T,) of the copy-first-frame baseline on the val video: every frame predicted
    as frame 0. A model below it has learnt less than doing nothing (a collapse)."""
    gt = val.images[:min(length, len(val.images))]
    return psnr_per_frame(np.repeat(gt[:1], len(gt), axis=0), gt)


def copy_first_ssim(val: Split, length: int = SEQ_LEN) -> np.ndarray:
    """Per-frame SSIM (T,) of the same copy-first-frame baseline."""
    gt = val.images[:min(length, len(val.images))]
    return ssim_per_frame(np.repeat(gt[:1], len(gt), axis=0), gt)


def validation_words(val_psnr: float, copy_first: float) -> str:
    """The training log's validation text: the score beside the copy-first-frame baseline, and in
    words when the model is below it (it predicts worse than repeating frame 0: a collapse)."""
    if np.isnan(val_psnr):
        return ""
    text = f"  val PSNR {val_psnr:.2f} dB (copy-first {copy_first:.2f}, {val_psnr - copy_first:+.2f})"
    if val_psnr < copy_first:
        text += ("  BELOW copy-first-frame: the rollout is worse than repeating frame 0 "
                 "(collapsed or not yet learnt; see val/pred_val.gif with --store_visualization)")
    return text


# ---- the guarded rollout of the val video ------------------------------------------------------
def refuse_non_finite(pred: torch.Tensor, what: str, which: str = "sequence {s}") -> None:
    """A rollout (S, T, 3, H, W) with a NaN or infinite value is refused in one line naming the
    first such sequence and frame: cast to 0..255 it would become a silently wrong file."""
    bad = ~torch.isfinite(pred.flatten(2)).all(dim=2)                         # (S, T)
    if bad.any():
        s, t = (int(i) for i in bad.nonzero()[0])
        raise Lab4Error(f"{what}: the rollout of {which.format(s=s)} is NaN or infinite from frame {t} "
                        f"({int(bad.sum())} frames in all); nothing written (the checkpoint diverged)")


def validate_samples(model: VideoCVAE, val: Split, length: int = SEQ_LEN, seeds=(0,), progress: bool = False,
                     cpu_amp: bool = False, z_mode: str = "sample",
                     what: str = "the model") -> tuple[torch.Tensor, np.ndarray]:
    """The val video rolled out once per seed, all together (sample k equals `validate` with seed
    seeds[k]): predictions (K, T, 3, H, W) on the CPU and per-frame PSNR (K, T). The spread over
    seeds is the variance of the prior-z score; the best of K needs the ground truth, so it is a
    diagnostic, never a submission. `what` names the model in the one-line errors."""
    T, K = min(length, len(val.images)), len(seeds)
    first = torch.from_numpy(np.ascontiguousarray(val.images[:1])).expand(K, -1, -1, -1)       # (K, 3, H, W)
    labels = torch.from_numpy(np.ascontiguousarray(val.labels[None, :T])).expand(K, -1, -1, -1, -1)  # (K, T, 3, H, W)
    device = next(model.parameters()).device
    with out_of_memory_as_error(f"rolling out the val video {K} time(s) on {device}"), \
            progress_bar(total=T - 1, desc="rollout val" + (f" x{K}" if K > 1 else ""), unit="frame",
                         show=progress, leave=False) as bar, autocast(device, rollout_precision(device, cpu_amp)):
        pred = model.rollout(first, labels, seeds=list(seeds), progress=bar, z_mode=z_mode).cpu()
    refuse_non_finite(pred, what, "the val video (sample {s})")
    return pred, np.stack([psnr_per_frame(p, val.images[:T]) for p in pred])


def validate(model: VideoCVAE, val: Split, length: int = SEQ_LEN, seed: int = 0, progress: bool = False,
             cpu_amp: bool = False, z_mode: str = "sample", what: str = "the model") -> tuple[torch.Tensor, np.ndarray]:
    """One rollout of the val video from frame 0 with `seed`: predictions (T, 3, H, W) on the CPU and
    per-frame PSNR (T,) (frame 0 is the given frame). The score to compare is kaggle_mean(psnr)."""
    pred, psnr = validate_samples(model, val, length, [seed], progress, cpu_amp, z_mode, what)
    return pred[0], psnr[0]


# ---- the val outputs ----------------------------------------------------------------------------
def write_validation_outputs(pred: torch.Tensor, psnr: np.ndarray, val: Split, out_dir, z_mode: str = "sample") -> dict:
    """val/psnr_per_frame.csv (PSNR and SSIM per frame, and the copy-first-frame baseline's) and
    .png, val/pred_val.gif (prediction | ground truth | pose). Returns the Kaggle-protocol means."""
    import matplotlib.pyplot as plt
    from .plots import plot_quality_per_frame, save_figure, save_gif, side_by_side
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    T = len(pred)
    gt = val.images[:T]
    baseline = copy_first_psnr(val, T)
    ssim, baseline_ssim = ssim_per_frame(pred, gt), copy_first_ssim(val, T)
    df = pd.DataFrame({"frame": np.arange(T), "psnr": psnr, "ssim": ssim, "copy_first_frame_psnr": baseline,
                       "copy_first_frame_ssim": baseline_ssim})
    with atomic_path(out / "psnr_per_frame.csv") as tmp:
        df.to_csv(tmp, index=False)
    z_words = "z ~ prior" if z_mode == "sample" else "z = prior mean"
    fig = plot_quality_per_frame(psnr, ssim, baseline, baseline_ssim,
                                 title=f"validation video ({T} frames, {z_words})")
    save_figure(fig, out, "psnr_per_frame.png")
    plt.close(fig)
    save_gif(side_by_side(pred, gt, val.labels[:T], scale=3), out / "pred_val.gif", fps=25)
    return {"val_psnr": kaggle_mean(psnr), "baseline_psnr": kaggle_mean(baseline), "min_psnr": float(psnr[1:].min()),
            "val_ssim": kaggle_mean(ssim), "baseline_ssim": kaggle_mean(baseline_ssim)}


def sample_spread(psnr: np.ndarray, seeds) -> pd.DataFrame:
    """One row per z-sequence: seed and its Kaggle-protocol val PSNR (frames 1..LAST_SCORED), from (K, T)."""
    return pd.DataFrame({"sample": np.arange(len(psnr)), "seed": list(seeds),
                         "val_psnr": [kaggle_mean(p) for p in psnr]})


def spread_words(spread: pd.DataFrame) -> str:
    v = spread["val_psnr"]
    best, worst = spread.loc[v.idxmax()], spread.loc[v.idxmin()]
    return (f"{len(v)} z-samples: mean {v.mean():.3f} dB (std {v.std(ddof=0):.3f}), best {best.val_psnr:.3f} "
            f"(seed {int(best.seed)}), worst {worst.val_psnr:.3f} (seed {int(worst.seed)})")


def evaluate_checkpoint(model: VideoCVAE, cfg, val: Split, samples: int = 1, log=print, average: int = 1,
                        more_models=()) -> dict:
    """`lab4-train --test` and `lab4-test --val`: the val video's rollout with --seed (CSV, plot, GIF
    in <save_root>/val) and, for K = samples > 1, K z-sequences (seeds seed..seed+K-1) and their
    spread in val/psnr_samples.csv. With average > 1 or more_models (other checkpoints of the run),
    the outputs are those of the per-pixel mean of `average` rollouts of each model (the mean of the
    predictive distribution, the best estimate under an MSE; `pixel_mean`). Returns the
    Kaggle-protocol means, the drift (early, late) and, with samples > 1, "spread"."""
    out = Path(cfg.save_root) / "val"
    seeds = [cfg.seed + k for k in range(max(samples, average))]
    preds, psnrs = validate_samples(model, val, cfg.val_vi_len, seeds, progress=True, cpu_amp=cfg.cpu_amp,
                                    z_mode=cfg.z, what=f"--ckpt_path {cfg.ckpt_path}")
    pred, psnr = preds[0], psnrs[0]
    if average > 1 or more_models:
        extra = [validate_samples(m, val, cfg.val_vi_len, seeds[:average], progress=True, cpu_amp=cfg.cpu_amp,
                                  z_mode=cfg.z, what="--average_ckpts")[0] for m in more_models]
        pred, psnr = pixel_mean(torch.cat([preds[:average], *extra]), val)
        log(f"val PSNR of one rollout (seed {cfg.seed}) {kaggle_mean(psnrs[0]):.3f} dB; of the mean of "
            f"{average * (1 + len(more_models))} rollouts {kaggle_mean(psnr):.3f} dB")
    res = write_validation_outputs(pred, psnr, val, out, z_mode=cfg.z)
    res.update(drift(psnr))
    z_words = "z ~ the prior" if cfg.z == "sample" else "z = the prior's mean"
    log(f"val PSNR (frames 1..{LAST_SCORED}, {z_words}) {res['val_psnr']:.3f} dB, SSIM {res['val_ssim']:.4f}; "
        f"copy-first-frame {res['baseline_psnr']:.3f} dB; min {res['min_psnr']:.2f} dB{drift_words(psnr)}")
    if model.appearance_memory is not None:
        res["memory_share"] = model.appearance_memory.frame0_share()
        log(f"appearance memory: frame 0's share of its weights {res['memory_share']:.3f} (0: not learned, "
            "the previous frame only)")
    if samples > 1:
        spread = sample_spread(psnrs[:samples], seeds[:samples])
        with atomic_path(out / "psnr_samples.csv") as tmp:
            spread.to_csv(tmp, index=False)
        log(f"val PSNR over {spread_words(spread)}; wrote {out / 'psnr_samples.csv'}")
        res["spread"] = spread
    return res


def pixel_mean(preds: torch.Tensor, val: Split) -> tuple[torch.Tensor, np.ndarray]:
    """The per-pixel mean of K rollouts of the val video (K, T, 3, H, W), the best estimate under the
    score's MSE (`lab4-test --average K`): the mean prediction (T, 3, H, W) and its per-frame PSNR (T,)."""
    mean = preds.mean(0)                                                  # (T, 3, H, W)
    return mean, psnr_per_frame(mean, val.images[:len(mean)])


# ---- trained runs compared (notebook 06) --------------------------------------------------------
def compare_runs(checkpoints: dict, val: Split, length: int = SEQ_LEN, samples: int = 4, seed: int = 1,
                 device: str = "cpu") -> tuple[pd.DataFrame, pd.DataFrame]:
    """{name: checkpoint path} -> (per_frame, summary): each run's checkpoint rolled out K times with z
    from its prior (seeds seed..seed+K-1), the per-pixel mean of those K rollouts (`lab4-test --average
    K`), and once with z = the prior's mean.
    per_frame: one row per (run, z, seed, frame) with psnr and ssim (z "sample" rows for each of
    the K seeds, "average" and "mean" rows once, seed -1), frames 0..T-1 of the val video.
    summary: one row per run: the Kaggle-protocol val PSNR of the --seed rollout and its drift
    (frames 1-150 minus 451-600), the mean, std, best and worst over the K samples, the pixel mean
    of K's PSNR and drift, the z = mean rollout's, and the mean SSIM of the seed and z = mean rollouts."""
    from .checkpoint import load_model
    frames, rows = [], []
    seeds = [seed + k for k in range(samples)]
    for name, path in checkpoints.items():
        model, cfg, _ = load_model(path, device)
        preds, psnrs = validate_samples(model, val, length, seeds, what=str(path))       # (K, T, 3, H, W), (K, T)
        mean_pred, mean_psnr = validate(model, val, length, z_mode="mean", what=str(path))   # (T, 3, H, W), (T,)
        gt = val.images[:len(mean_psnr)]
        ssims = [ssim_per_frame(p, gt) for p in preds]
        mean_ssim = ssim_per_frame(mean_pred, gt)
        average, average_psnr = pixel_mean(preds, val)                                  # (T, 3, H, W), (T,)
        for s, psnr, ssim in zip(seeds, psnrs, ssims):
            frames.append(_frame_rows(name, "sample", s, psnr, ssim))
        frames.append(_frame_rows(name, "average", -1, average_psnr, ssim_per_frame(average, gt)))
        frames.append(_frame_rows(name, "mean", -1, mean_psnr, mean_ssim))
        spread = sample_spread(psnrs, seeds)["val_psnr"]
        rows.append({"run": name, "prior": cfg.prior, "val PSNR (seed)": spread.iloc[0],
                     "drift (seed)": drift(psnrs[0])["drift"],
                     f"mean of {samples}": spread.mean(), "std": spread.std(ddof=0), "best": spread.max(),
                     "worst": spread.min(), f"pixel mean of {samples}": kaggle_mean(average_psnr),
                     "drift, pixel mean": drift(average_psnr)["drift"], "z = mean": kaggle_mean(mean_psnr),
                     "SSIM (seed)": kaggle_mean(ssims[0]), "SSIM, z = mean": kaggle_mean(mean_ssim)})
    return pd.concat(frames, ignore_index=True), pd.DataFrame(rows).set_index("run")


def _frame_rows(run: str, z: str, seed: int, psnr: np.ndarray, ssim: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"run": run, "z": z, "seed": seed, "frame": np.arange(len(psnr)), "psnr": psnr, "ssim": ssim})


def copy_first_rows(val: Split, length: int = SEQ_LEN) -> pd.DataFrame:
    """The copy-first-frame baseline's per-frame PSNR and SSIM, as one more 'run'."""
    return _frame_rows("copy first frame", "-", -1, copy_first_psnr(val, length), copy_first_ssim(val, length))
