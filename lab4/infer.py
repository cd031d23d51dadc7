"""Inference on the test sequences: each rolled out from its given first frame over its 630 pose
frames (z from the prior), written as the template's outputs: pred_seq0.gif .. pred_seq4.gif and
submission.csv (`lab4-test`, lab4/cli.py)."""
from __future__ import annotations

from pathlib import Path

import torch

from .data import Split
from .device import autocast, out_of_memory_as_error, rollout_precision
from .evaluate import refuse_non_finite
from .model import VideoCVAE
from .progress import progress_bar
from .score import write_submission


def predict_test(model: VideoCVAE, test: Split, seed: int = 0, progress: bool = True,
                 cpu_amp: bool = False, z_mode: str = "sample", average: int = 1, more_models=()) -> torch.Tensor:
    """All test sequences rolled out together -> (S, 630, 3, H, W) float on the CPU; sequence s
    draws its noise from a generator seeded seed * 1000 + s. cpu_amp: bfloat16 autocast when the
    model is on the CPU (opt-in, changes the numerics); z_mode: sample z from the prior, or its mean.
    average K > 1 and more_models (other checkpoints of the run): the per-pixel mean of K rollouts of
    each model, rollout k seeded as `--seed` seed + k would be (k = 0: the single rollout above)."""
    total, n = None, 0
    for m in (model, *more_models):
        for k in range(average):
            pred = _rollout_test_sequences(m, test, seed + k, progress, cpu_amp, z_mode)
            total, n = (pred if total is None else total + pred), n + 1
    return total / n if n > 1 else total


def _rollout_test_sequences(model: VideoCVAE, test: Split, seed: int, progress: bool, cpu_amp: bool,
                            z_mode: str) -> torch.Tensor:
    S, T = test.labels.shape[:2]
    device = next(model.parameters()).device
    with out_of_memory_as_error(f"rolling out the {S} test sequences together on {device} (use --device cpu)"), \
            progress_bar(total=T - 1, desc="rollout test", unit="frame", show=progress) as bar, \
            autocast(device, rollout_precision(device, cpu_amp)):
        out = model.rollout(torch.from_numpy(test.images), torch.from_numpy(test.labels),
                            seeds=[seed * 1000 + s for s in range(S)], progress=bar, z_mode=z_mode)
    return out.cpu()


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
