"""Inference: roll out the test sequences into submission.csv and GIFs; evaluate the val video.

    lab4-test --DR <data> --save_root <out> --ckpt_path <ckpt> [--val [--samples K]] [--z mean]

Accepts every flag of the template's Tester.py (they share Trainer.py's list); model dims and the
prior come from the checkpoint. Writes pred_seq0.gif .. pred_seq4.gif and submission.csv in
--save_root, and with --val: val/psnr_per_frame.csv (PSNR and SSIM per frame), .png and
val/pred_val.gif; with --samples K also val/psnr_samples.csv (one row per z-sequence).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .data import Split, load_split
from .device import out_of_memory_as_error, select_device
from .errors import Lab4Error
from .files import atomic_path
from .model import VideoCVAE, autocast_for
from .score import LAST_SCORED, psnr_per_frame, ssim_per_frame, write_submission


def _rollout_autocast(model: VideoCVAE, cpu_amp: bool):
    return autocast_for(next(model.parameters()).device, cpu_amp=cpu_amp)


def predict_test(model: VideoCVAE, test: Split, seed: int = 0, progress: bool = True,
                 cpu_amp: bool = False, z_mode: str = "sample") -> torch.Tensor:
    """All test sequences rolled out together -> (S, 630, 3, H, W) float on the CPU.
    cpu_amp: bfloat16 autocast when the model is on the CPU (opt-in, changes the numerics);
    z_mode: sample z from the prior, or take its mean."""
    S, T = test.labels.shape[:2]
    with tqdm(total=T - 1, desc="rollout test", unit="frame", disable=not progress) as bar, \
            _rollout_autocast(model, cpu_amp):
        out = model.rollout(torch.from_numpy(test.images), torch.from_numpy(test.labels),
                            seeds=[seed * 1000 + s for s in range(S)], progress=bar, z_mode=z_mode)
    return out.cpu()


def refuse_non_finite(pred: torch.Tensor, what: str, which: str = "sequence {s}") -> None:
    """A rollout (S, T, 3, H, W) with a NaN or infinite value is refused in one line naming the
    first such sequence and frame: cast to 0..255 it would become a silently wrong file."""
    bad = ~torch.isfinite(pred.flatten(2)).all(dim=2)                         # (S, T)
    if bad.any():
        s, t = (int(i) for i in bad.nonzero()[0])
        raise Lab4Error(f"{what}: the rollout of {which.format(s=s)} is NaN or infinite from frame {t} "
                        f"({int(bad.sum())} frames in all); nothing written (the checkpoint diverged)")


def write_test_outputs(pred: torch.Tensor, save_root, gifs: bool = True, what: str = "prediction") -> Path:
    """submission.csv and pred_seq<k>.gif (the template's names) for predictions (S, T, 3, H, W).
    Non-finite predictions are refused before anything is written (an earlier file stays)."""
    from .plots import frames_to_uint8, save_gif
    refuse_non_finite(pred, what, "test sequence {s}")
    save_root = Path(save_root)
    if gifs:
        for k in range(len(pred)):
            save_gif(frames_to_uint8(pred[k]), save_root / f"pred_seq{k}.gif", fps=50)
    return write_submission(pred, save_root / "submission.csv")


def validate(model: VideoCVAE, val: Split, length: int = 630, seed: int = 0,
             progress: bool = False, cpu_amp: bool = False, z_mode: str = "sample") -> tuple[torch.Tensor, np.ndarray]:
    """The Kaggle-comparable protocol on the val video: from frame 0 only, roll out `length`
    frames with z from the prior (z_mode "sample", the Kaggle protocol, or "mean"). Returns
    predictions (T, 3, H, W) on the CPU and per-frame PSNR (T,) (frame 0 is the given frame).
    The score to compare is psnr[1:601].mean()."""
    pred, psnr = validate_samples(model, val, length, [seed], progress, cpu_amp, z_mode)
    return pred[0], psnr[0]


def validate_samples(model: VideoCVAE, val: Split, length: int = 630, seeds=(0,), progress: bool = False,
                     cpu_amp: bool = False, z_mode: str = "sample") -> tuple[torch.Tensor, np.ndarray]:
    """The val video rolled out once per seed, all together (sample k equals `validate` with
    seed seeds[k]): predictions (K, T, 3, H, W) on the CPU and per-frame PSNR (K, T). The spread
    over seeds is the variance of the prior-z score; the best of K needs the ground truth, so it
    is a diagnostic, never a submission."""
    T, K = min(length, len(val.images)), len(seeds)
    first = torch.from_numpy(np.ascontiguousarray(val.images[:1])).expand(K, -1, -1, -1)       # (K, 3, H, W)
    labels = torch.from_numpy(np.ascontiguousarray(val.labels[None, :T])).expand(K, -1, -1, -1, -1)  # (K, T, 3, H, W)
    with tqdm(total=T - 1, desc="rollout val" + (f" x{K}" if K > 1 else ""), unit="frame", disable=not progress,
              leave=False) as bar, _rollout_autocast(model, cpu_amp):
        pred = model.rollout(first, labels, seeds=list(seeds), progress=bar, z_mode=z_mode).cpu()
    return pred, np.stack([psnr_per_frame(p, val.images[:T]) for p in pred])


def sample_spread(psnr: np.ndarray, seeds) -> pd.DataFrame:
    """One row per z-sequence: seed and its Kaggle-protocol val PSNR (frames 1..600), from (K, T)."""
    return pd.DataFrame({"sample": np.arange(len(psnr)), "seed": list(seeds),
                         "val_psnr": [kaggle_mean(p) for p in psnr]})


def spread_words(spread: pd.DataFrame) -> str:
    v = spread["val_psnr"]
    best, worst = spread.loc[v.idxmax()], spread.loc[v.idxmin()]
    return (f"{len(v)} z-samples: mean {v.mean():.3f} dB (std {v.std(ddof=0):.3f}), best {best.val_psnr:.3f} "
            f"(seed {int(best.seed)}), worst {worst.val_psnr:.3f} (seed {int(worst.seed)})")


def copy_first_psnr(val: Split, length: int = 630) -> np.ndarray:
    """Per-frame PSNR (T,) of the copy-first-frame baseline on the val video: every frame predicted
    as frame 0. A model below it has learnt less than doing nothing (a collapse)."""
    gt = val.images[:min(length, len(val.images))]
    return psnr_per_frame(np.repeat(gt[:1], len(gt), axis=0), gt)


def copy_first_ssim(val: Split, length: int = 630) -> np.ndarray:
    """Per-frame SSIM (T,) of the same copy-first-frame baseline."""
    gt = val.images[:min(length, len(val.images))]
    return ssim_per_frame(np.repeat(gt[:1], len(gt), axis=0), gt)


def kaggle_mean(psnr: np.ndarray) -> float:
    """Mean PSNR over frames 1..600, as Kaggle scores a sequence."""
    return float(np.mean(psnr[1:LAST_SCORED + 1]))


def write_validation_outputs(pred: torch.Tensor, psnr: np.ndarray, val: Split, out_dir, z_mode: str = "sample") -> dict:
    """val/psnr_per_frame.csv (PSNR and SSIM per frame, and the copy-first-frame baseline's) and
    .png, val/pred_val.gif (prediction | ground truth | pose)."""
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


def evaluate_val(model: VideoCVAE, cfg, save_root: Path, samples: int, device) -> dict:
    """lab4-test --val [--samples K]: the val video's rollout with --seed (CSV, plot, GIF) and,
    for K > 1, K z-sequences (seeds seed..seed+K-1) and their spread in val/psnr_samples.csv."""
    val = load_split(cfg.DR, "val", cfg.frame_H, cfg.frame_W, cfg.cache_dir, cfg.num_workers)
    seeds = [cfg.seed + k for k in range(samples)]
    with out_of_memory_as_error(f"rolling out the val video {samples} time(s) on {device}"):
        preds, psnrs = validate_samples(model, val, cfg.val_vi_len, seeds, progress=True, cpu_amp=cfg.cpu_amp,
                                        z_mode=cfg.z)
    refuse_non_finite(preds, f"--ckpt_path {cfg.ckpt_path}", "the val video (sample {s})")
    res = write_validation_outputs(preds[0], psnrs[0], val, save_root / "val", z_mode=cfg.z)
    z_words = "z ~ the prior" if cfg.z == "sample" else "z = the prior's mean"
    print(f"val PSNR (frames 1..600, {z_words}) {res['val_psnr']:.3f} dB, SSIM {res['val_ssim']:.4f}; "
          f"copy-first-frame {res['baseline_psnr']:.3f} dB; min {res['min_psnr']:.2f} dB")
    if samples > 1:
        spread = sample_spread(psnrs, seeds)
        with atomic_path(save_root / "val" / "psnr_samples.csv") as tmp:
            spread.to_csv(tmp, index=False)
        print(f"val PSNR over {spread_words(spread)}; wrote {save_root / 'val' / 'psnr_samples.csv'}")
        res["spread"] = spread
    return res


def main(argv=None) -> int:
    from .checkpoint import load_model, refuse_other_size
    from .cli import build_parser, parse_config
    parser = build_parser("lab4-test", test_tool=True)
    try:
        cfg, explicit, extra = parse_config(parser, argv)
        if not cfg.ckpt_path:
            raise Lab4Error("--ckpt_path: required (the checkpoint to test)")
        device = select_device(cfg.device)
        model, mcfg, _ = load_model(cfg.ckpt_path, device)
        refuse_other_size(mcfg, explicit, cfg.ckpt_path)
        if "sigmoid_output" in explicit:
            model.sigmoid_output = cfg.sigmoid_output
        model.compile_rollout = cfg.compile
        save_root = Path(cfg.save_root)
        samples = extra.get("samples")
        if samples is not None and (samples < 1 or not extra.get("val")):
            raise Lab4Error(f"--samples {samples}: expected a positive number of z-sequences, with --val")
        if extra.get("val"):
            evaluate_val(model, cfg, save_root, samples or 1, device)
        test = load_split(cfg.DR, "test", cfg.frame_H, cfg.frame_W, cfg.cache_dir, cfg.num_workers)
        with out_of_memory_as_error(f"rolling out the {len(test.images)} test sequences together on {device} "
                                    f"(use --device cpu)"):
            pred = predict_test(model, test, seed=cfg.seed, cpu_amp=cfg.cpu_amp, z_mode=cfg.z)
        path = write_test_outputs(pred, save_root, what=f"--ckpt_path {cfg.ckpt_path}")
        print(f"wrote {path} ({pred.shape[0] * pred.shape[1]} rows) and pred_seq0..{len(pred) - 1}.gif")
    except Lab4Error as e:
        print(f"lab4-test: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
