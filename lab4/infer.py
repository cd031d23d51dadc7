"""Inference: roll out the test sequences into submission.csv and GIFs; evaluate the val video.

    lab4-test --DR <data> --save_root <out> --ckpt_path <ckpt> [--val]

Accepts every flag of the template's Tester.py (they share Trainer.py's list); model dims come
from the checkpoint. Writes pred_seq0.gif .. pred_seq4.gif and submission.csv in --save_root,
and with --val: val/psnr_per_frame.csv, val/psnr_per_frame.png, val/pred_val.gif.
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
from .score import LAST_SCORED, psnr_per_frame, write_submission


def _rollout_autocast(model: VideoCVAE, cpu_amp: bool):
    return autocast_for(next(model.parameters()).device, rollout=True, cpu_amp=cpu_amp)


def predict_test(model: VideoCVAE, test: Split, seed: int = 0, progress: bool = True,
                 cpu_amp: bool = False) -> torch.Tensor:
    """All test sequences rolled out together -> (S, 630, 3, H, W) float on the CPU.
    cpu_amp: bfloat16 autocast when the model is on the CPU (opt-in, changes the numerics)."""
    S, T = test.labels.shape[:2]
    with tqdm(total=T - 1, desc="rollout test", unit="frame", disable=not progress) as bar, \
            _rollout_autocast(model, cpu_amp):
        out = model.rollout(torch.from_numpy(test.images), torch.from_numpy(test.labels),
                            seeds=[seed * 1000 + s for s in range(S)], progress=bar)
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
             progress: bool = False, cpu_amp: bool = False) -> tuple[torch.Tensor, np.ndarray]:
    """The Kaggle-comparable protocol on the val video: from frame 0 only, roll out `length`
    frames with z ~ N(0, I). Returns predictions (T, 3, H, W) on the CPU and per-frame PSNR (T,)
    (frame 0 is the given frame). The score to compare is psnr[1:601].mean()."""
    T = min(length, len(val.images))
    first = torch.from_numpy(np.ascontiguousarray(val.images[:1]))                 # (1, 3, H, W)
    labels = torch.from_numpy(np.ascontiguousarray(val.labels[None, :T]))           # (1, T, 3, H, W)
    with tqdm(total=T - 1, desc="rollout val", unit="frame", disable=not progress, leave=False) as bar, \
            _rollout_autocast(model, cpu_amp):
        pred = model.rollout(first, labels, seeds=[seed], progress=bar)[0].cpu()
    return pred, psnr_per_frame(pred, val.images[:T])


def copy_first_psnr(val: Split, length: int = 630) -> np.ndarray:
    """Per-frame PSNR (T,) of the copy-first-frame baseline on the val video: every frame predicted
    as frame 0. A model below it has learnt less than doing nothing (a collapse)."""
    gt = val.images[:min(length, len(val.images))]
    return psnr_per_frame(np.repeat(gt[:1], len(gt), axis=0), gt)


def kaggle_mean(psnr: np.ndarray) -> float:
    """Mean PSNR over frames 1..600, as Kaggle scores a sequence."""
    return float(np.mean(psnr[1:LAST_SCORED + 1]))


def write_validation_outputs(pred: torch.Tensor, psnr: np.ndarray, val: Split, out_dir) -> dict:
    """val/psnr_per_frame.csv and .png (with the copy-first-frame baseline), val/pred_val.gif
    (prediction | ground truth | pose)."""
    import matplotlib.pyplot as plt
    from .plots import plot_psnr_per_frame, save_figure, save_gif, side_by_side
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    T = len(pred)
    gt = val.images[:T]
    baseline = copy_first_psnr(val, T)
    df = pd.DataFrame({"frame": np.arange(T), "psnr": psnr, "copy_first_frame_psnr": baseline})
    with atomic_path(out / "psnr_per_frame.csv") as tmp:
        df.to_csv(tmp, index=False)
    fig = plot_psnr_per_frame(psnr, baseline, title=f"per-frame PSNR, validation video ({T} frames, z ~ N(0, I))")
    save_figure(fig, out, "psnr_per_frame.png")
    plt.close(fig)
    save_gif(side_by_side(pred, gt, val.labels[:T], scale=3), out / "pred_val.gif", fps=25)
    return {"val_psnr": kaggle_mean(psnr), "baseline_psnr": kaggle_mean(baseline), "min_psnr": float(psnr[1:].min())}


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
        save_root = Path(cfg.save_root)
        if extra.get("val"):
            val = load_split(cfg.DR, "val", cfg.frame_H, cfg.frame_W, cfg.cache_dir, cfg.num_workers)
            with out_of_memory_as_error(f"rolling out the val video on {device}"):
                pred, psnr = validate(model, val, cfg.val_vi_len, seed=cfg.seed, progress=True, cpu_amp=cfg.cpu_amp)
            refuse_non_finite(pred[None], f"--ckpt_path {cfg.ckpt_path}", "the val video")
            res = write_validation_outputs(pred, psnr, val, save_root / "val")
            print(f"val PSNR (frames 1..600, z ~ N(0, I)) {res['val_psnr']:.3f} dB; "
                  f"copy-first-frame {res['baseline_psnr']:.3f} dB; min {res['min_psnr']:.2f} dB")
        test = load_split(cfg.DR, "test", cfg.frame_H, cfg.frame_W, cfg.cache_dir, cfg.num_workers)
        with out_of_memory_as_error(f"rolling out the {len(test.images)} test sequences together on {device} "
                                    f"(use --device cpu)"):
            pred = predict_test(model, test, seed=cfg.seed, cpu_amp=cfg.cpu_amp)
        path = write_test_outputs(pred, save_root, what=f"--ckpt_path {cfg.ckpt_path}")
        print(f"wrote {path} ({pred.shape[0] * pred.shape[1]} rows) and pred_seq0..{len(pred) - 1}.gif")
    except Lab4Error as e:
        print(f"lab4-test: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
