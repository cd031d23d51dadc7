"""The submission file and the Kaggle score.

submission.csv: header `id,0,1,...,6143`; one row per frame, 5 sequences x 630 frames = 3,150
rows with ids 0..3149 in sequence order; row 0 of each sequence is the given first frame; a row
is one (3, 32, 64) frame flattened channel-first, as integers rint(x * 255) in 0..255.

Score: for rows i with i % 630 != 0 and i % 630 <= 600 (frames 1..600 of each sequence),
PSNR_i = 20 log10(255) - 10 log10(MSE_i) over the 6,144 values; the score is their mean.
Public = sequences 0-2, private = sequences 3-4 (the constants are lab4.config's). A frame equal
to the solution (MSE 0) counts as PSNR_CAP dB instead of infinity.

    lab4-score --solution GT.csv --submission SUB.csv [--baseline]      (lab4/cli.py)
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from .config import LAST_SCORED, N_PUBLIC, N_TEST_SEQUENCES, SEQ_LEN
from .errors import Lab4Error
from .files import atomic_path

PSNR_CAP = 100.0       # dB for a frame with zero error


def to_uint8(frames) -> np.ndarray:
    """Frames (tensor or array), float in [0, 1] (clipped) or uint8 -> uint8 rint(x * 255), the
    submission's quantisation; the one place it is written (GIFs and figures use it too)."""
    a = frames.detach().cpu().numpy() if hasattr(frames, "detach") else np.asarray(frames)
    if a.dtype != np.uint8:
        a = np.clip(np.rint(a.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    return a


def frames_to_rows(frames) -> np.ndarray:
    """Frames (..., 3, H, W), float in [0, 1] (clipped) or uint8, or rows already flat (n, 3*H*W)
    -> uint8 rows (n, 3*H*W)."""
    a = to_uint8(frames)
    return a if a.ndim == 2 else a.reshape(-1, int(np.prod(a.shape[-3:])))


_DECIMAL = np.array([str(v) for v in range(256)], dtype=object)     # 0..255 as the CSV writes them


def write_submission(frames, path) -> Path:
    """Write frames (S, T, 3, H, W) (or already flat rows) as a submission CSV, atomically. The
    bytes are pandas' `to_csv` of the template's DataFrame (tests/test_benchmarks_reference.py),
    written ~14x faster: each uint8 value is looked up as text, a row is one join."""
    rows = frames_to_rows(frames)                                        # (n, 6144) uint8
    header = ",".join(["id", *map(str, range(rows.shape[1]))])
    with atomic_path(path) as tmp, open(tmp, "w", newline="\n") as f:
        f.write(header + "\n")
        for i, row in enumerate(rows):
            f.write(f"{i}," + ",".join(_DECIMAL[row].tolist()) + "\n")
    return Path(path)


def read_submission(path, n_rows: int | None = N_TEST_SEQUENCES * SEQ_LEN, n_values: int = 3 * 32 * 64) -> np.ndarray:
    """Read and validate a submission/solution CSV -> uint8 rows (n, n_values). Raises
    Lab4Error naming the file and what is wrong (header, row count, ids, value range)."""
    path = Path(path)
    if not path.is_file():
        raise Lab4Error(f"{path}: no such file")
    try:
        df = pd.read_csv(path, dtype=np.float64)
    except (ValueError, OSError, zipfile.BadZipFile, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise Lab4Error(f"{path}: not a readable CSV of numbers ({reason})") from None
    expected_cols = ["id"] + [str(i) for i in range(n_values)]
    if list(df.columns) != expected_cols:
        got = ",".join(map(str, df.columns[:3])) + (",..." if len(df.columns) > 3 else "")
        raise Lab4Error(f"{path}: header must be id,0,1,...,{n_values - 1} ({n_values + 1} columns); "
                        f"found {got} ({len(df.columns)} columns)")
    if n_rows is not None and len(df) != n_rows:
        raise Lab4Error(f"{path}: expected {n_rows} rows ({n_rows // SEQ_LEN} sequences x {SEQ_LEN} frames), found {len(df)}")
    if len(df) == 0 or len(df) % SEQ_LEN:
        raise Lab4Error(f"{path}: {len(df)} rows is not a whole number of {SEQ_LEN}-frame sequences")
    ids = df["id"].to_numpy()
    if not np.array_equal(ids, np.arange(len(df))):
        bad = int(np.argmax(ids != np.arange(len(df))))
        raise Lab4Error(f"{path}: ids must be 0..{len(df) - 1} in order; row {bad} has id {ids[bad]:g}")
    values = df.iloc[:, 1:].to_numpy()
    if np.isnan(values).any():
        r = int(np.argwhere(np.isnan(values))[0][0])
        raise Lab4Error(f"{path}: empty or non-numeric value in row {r}")
    if values.min() < 0 or values.max() > 255:
        raise Lab4Error(f"{path}: values must lie in 0..255; found {values.min():g}..{values.max():g}")
    if not np.array_equal(values, np.rint(values)):
        raise Lab4Error(f"{path}: values must be integers (rint(x * 255))")
    return values.astype(np.uint8)


def read_solution(path) -> np.ndarray:
    """Ground truth as uint8 rows: a submission-format CSV, or a uint8 .npy of frames (S, T, 3, H, W)."""
    path = Path(path)
    if path.suffix != ".npy":
        return read_submission(path, n_rows=None)
    if not path.is_file():
        raise Lab4Error(f"{path}: no such file")
    frames = np.load(path)
    if frames.dtype != np.uint8 or frames.ndim != 5 or frames.shape[1] != SEQ_LEN:
        raise Lab4Error(f"{path}: expected uint8 frames (S, {SEQ_LEN}, 3, H, W), found {frames.dtype} {frames.shape}")
    return frames_to_rows(frames)


def psnr_rows(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-row PSNR in dB on the 0..255 scale, capped at PSNR_CAP."""
    mse = ((pred.astype(np.float64) - gt.astype(np.float64)) ** 2).mean(axis=1)
    with np.errstate(divide="ignore"):
        psnr = 20 * np.log10(255.0) - 10 * np.log10(mse)
    return np.minimum(psnr, PSNR_CAP)


def scored_mask(n_rows: int) -> np.ndarray:
    i = np.arange(n_rows) % SEQ_LEN
    return (i != 0) & (i <= LAST_SCORED)


def kaggle_score(solution: np.ndarray, submission: np.ndarray) -> dict:
    """Mean PSNR over scored frames: overall, public (sequences 0-2) and private (3-)."""
    if solution.shape != submission.shape:
        raise Lab4Error(f"submission shape {submission.shape} differs from the solution's {solution.shape}")
    psnr = psnr_rows(submission, solution)
    mask = scored_mask(len(psnr))
    seq = np.arange(len(psnr)) // SEQ_LEN
    public, private = mask & (seq < N_PUBLIC), mask & (seq >= N_PUBLIC)
    return {"score": float(psnr[mask].mean()),
            "public": float(psnr[public].mean()) if public.any() else float("nan"),
            "private": float(psnr[private].mean()) if private.any() else float("nan"),
            "frames": int(mask.sum()), "psnr": psnr}


def copy_first_frame(rows: np.ndarray) -> np.ndarray:
    """The baseline: every frame of a sequence is its given first frame."""
    first = rows[::SEQ_LEN]
    return np.repeat(first, SEQ_LEN, axis=0)


def psnr_per_frame(pred, gt) -> np.ndarray:
    """Per-frame PSNR (dB, 0..255 scale, quantised as the submission is) of (T, 3, H, W) frames."""
    return psnr_rows(frames_to_rows(pred), frames_to_rows(gt))


def ssim_per_frame(pred, gt) -> np.ndarray:
    """Per-frame SSIM (T,) of (T, 3, H, W) frames, quantised as the submission is (torchmetrics'
    structural_similarity_index_measure: Gaussian window 11, sigma 1.5, data range 1). Reported
    next to PSNR; the Kaggle score stays PSNR. In float64: float32 runs 18x faster on a CPU but
    gives 0.99996, not 1, for a frame equal to the truth (its convolutions round each image of the
    batch differently)."""
    import torch
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim
    a, b = (torch.from_numpy(to_uint8(x)).double() / 255.0 for x in (pred, gt))     # (T, 3, H, W) each
    return ssim(a, b, data_range=1.0, reduction="none").numpy().astype(np.float64)
