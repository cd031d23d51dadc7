"""Figures for the notebooks, the CLIs and the README. Each function returns a matplotlib Figure
(the caller shows or saves it); GIF writers use imageio."""
from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .config import TrainConfig
from .schedules import kl_beta_schedule, teacher_forcing_ratio

COLORS = {"Cyclical": "tab:blue", "Monotonic": "tab:orange", "None": "tab:green"}


def plot_beta_schedules(num_epoch: int = 70, kl_anneal_cycle: int = 10, kl_anneal_ratio: float = 1.0,
                        kl_reach_stop: bool = True, ax=None):
    """Beta per epoch for the three KL annealing types."""
    fig, ax = _fig_ax(ax, (8, 3))
    for kind in ("Cyclical", "Monotonic", "None"):
        cfg = TrainConfig(num_epoch=num_epoch, kl_anneal_type=kind, kl_anneal_cycle=kl_anneal_cycle,
                          kl_anneal_ratio=kl_anneal_ratio, kl_reach_stop=kl_reach_stop)
        ax.step(np.arange(num_epoch), kl_beta_schedule(cfg), where="post", label=kind, color=COLORS[kind], lw=2)
    ax.set(xlabel="epoch", ylabel="beta (KL weight)", ylim=(-0.05, 1.1),
           title=f"KL annealing: {kl_anneal_cycle} cycles, ratio {kl_anneal_ratio}")
    ax.legend(loc="lower right")
    return fig


def plot_tfr_schedule(tfr: float = 1.0, tfr_sde: int = 10, tfr_d_step: float = 0.1, num_epoch: int = 70, ax=None):
    fig, ax = _fig_ax(ax, (8, 3))
    cfg = TrainConfig(tfr=tfr, tfr_sde=tfr_sde, tfr_d_step=tfr_d_step, num_epoch=num_epoch)
    ax.step(np.arange(num_epoch), [teacher_forcing_ratio(cfg, e) for e in range(num_epoch)], where="post", lw=2, color="tab:purple")
    ax.set(xlabel="epoch", ylabel="teacher-forcing ratio", ylim=(-0.05, 1.05),
           title=f"tfr={tfr}, decays by {tfr_d_step}/epoch from epoch {tfr_sde}")
    return fig


def plot_loss_curves(runs: dict[str, pd.DataFrame] | pd.DataFrame):
    """Total loss, MSE, KL and beta per epoch, one line per run (dict name -> metrics frame)."""
    runs = {"run": runs} if isinstance(runs, pd.DataFrame) else runs
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    for name, df in runs.items():
        for ax, col in zip(axes, ("loss", "mse", "kl", "beta")):
            ax.plot(df["epoch"], df[col], marker="o", ms=3, label=name, color=COLORS.get(name))
    for ax, col in zip(axes, ("total loss", "MSE", "KL (per frame)", "beta")):
        ax.set(title=col, xlabel="epoch")
    axes[1].set_yscale("log"), axes[2].set_yscale("symlog", linthresh=1e-3)
    axes[0].legend()
    fig.tight_layout()
    return fig


def plot_val_psnr(runs: dict[str, pd.DataFrame] | pd.DataFrame, ax=None):
    runs = {"run": runs} if isinstance(runs, pd.DataFrame) else runs
    fig, ax = _fig_ax(ax, (6, 3))
    for name, df in runs.items():
        d = df.dropna(subset=["val_psnr"])
        ax.plot(d["epoch"], d["val_psnr"], marker="o", label=name, color=COLORS.get(name))
    ax.set(xlabel="epoch", ylabel="val PSNR (dB)", title="validation: 630-frame rollout, z ~ N(0, I)")
    ax.legend()
    return fig


def plot_tfr_vs_loss(runs: dict[str, pd.DataFrame] | pd.DataFrame):
    """The teacher-forcing ratio on a second axis against the training loss, shared epochs."""
    runs = {"run": runs} if isinstance(runs, pd.DataFrame) else runs
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax2 = ax.twinx()
    for i, (name, df) in enumerate(runs.items()):
        c = f"C{i}"
        ax.plot(df["epoch"], df["loss"], marker="o", ms=3, color=c, label=f"{name}: loss")
        ax2.step(df["epoch"], df["tfr"], where="mid", ls="--", color=c, alpha=0.7, label=f"{name}: tfr")
    ax.set(xlabel="epoch", ylabel="training loss", yscale="log")
    ax2.set(ylabel="teacher-forcing ratio", ylim=(-0.05, 1.05))
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def plot_psnr_per_frame(psnr: np.ndarray, baseline: np.ndarray | None = None, title: str = "validation video", ax=None):
    """Per-frame PSNR (frame 0 is the given frame and is skipped), mean and min annotated."""
    fig, ax = _fig_ax(ax, (9, 3.2))
    t = np.arange(1, len(psnr))
    vals = np.asarray(psnr)[1:]
    ax.plot(t, vals, lw=1.2, color="tab:blue", label=f"model: mean {vals.mean():.2f} dB")
    if baseline is not None:
        b = np.asarray(baseline)[1:]
        ax.plot(t, b, lw=1, color="grey", alpha=0.8, label=f"copy first frame: mean {b.mean():.2f} dB")
    i = int(np.argmin(vals))
    ax.axhline(vals.mean(), color="tab:blue", ls=":", lw=1)
    ax.annotate(f"min {vals[i]:.2f} dB @ frame {i + 1}", (i + 1, vals[i]), xytext=(10, -12),
                textcoords="offset points", fontsize=8, arrowprops=dict(arrowstyle="->", lw=0.8))
    ax.set(xlabel="frame", ylabel="PSNR (dB)", title=title)
    ax.legend(loc="upper right", fontsize=8)
    return fig


def frames_to_uint8(frames) -> np.ndarray:
    """(T, 3, H, W) float [0, 1] or uint8 (tensor or array) -> (T, H, W, 3) uint8."""
    a = frames.detach().cpu().numpy() if hasattr(frames, "detach") else np.asarray(frames)
    if a.dtype != np.uint8:
        a = np.clip(np.rint(a * 255), 0, 255).astype(np.uint8)
    return a.transpose(0, 2, 3, 1)


def side_by_side(*videos, scale: int = 1) -> np.ndarray:
    """Several (T, 3, H, W) videos -> one (T, H*scale, n*W*scale, 3) uint8 video, 2-px gaps."""
    vids = [frames_to_uint8(v) for v in videos]
    T = min(len(v) for v in vids)
    gap = np.full((T, vids[0].shape[1], 2, 3), 255, np.uint8)
    parts = []
    for v in vids:
        parts += [v[:T], gap]
    out = np.concatenate(parts[:-1], axis=2)
    return out.repeat(scale, axis=1).repeat(scale, axis=2) if scale > 1 else out


def save_gif(video: np.ndarray, path, fps: int = 25) -> Path:
    """(T, H, W, 3) uint8 -> an endlessly looping GIF."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.gif")
    imageio.mimsave(tmp, list(video), duration=1000 / fps, loop=0)
    tmp.replace(path)
    return path


def frame_strip(frames, n: int = 8, ax=None, title: str | None = None):
    """n evenly spaced frames of a (T, 3, H, W) video in one row."""
    v = frames_to_uint8(frames)
    idx = np.linspace(0, len(v) - 1, n).astype(int)
    fig, ax = _fig_ax(ax, (2 * n, 1.4))
    ax.imshow(np.concatenate([np.pad(v[i], ((0, 0), (0, 2), (0, 0)), constant_values=255) for i in idx], axis=1))
    ax.set_xticks([(i + 0.5) * (v.shape[2] + 2) for i in range(n)], [str(i) for i in idx])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return fig


def _fig_ax(ax, size):
    if ax is None:
        fig, ax = plt.subplots(figsize=size)
        return fig, ax
    return ax.figure, ax
