"""Figures for the notebooks, the CLIs and the README. Each function returns a matplotlib Figure
(the caller shows or saves it); GIF writers use imageio. Comparisons of runs are seaborn plots of
one tidy DataFrame (`runs_long`: the runs' metrics.csv rows with a `run` column, the hue), in one
theme (THEME); single curves stay plain matplotlib."""
from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from .config import LAST_SCORED, SEQ_LEN, TrainConfig
from .files import atomic_path
from .schedules import kl_beta_schedule, teacher_forcing_ratio
from .score import to_uint8

COLORS = {"Cyclical": "tab:blue", "Monotonic": "tab:orange", "None": "tab:green"}
THEME = "whitegrid"          # seaborn style of every comparison figure


def runs_long(runs: dict[str, pd.DataFrame] | pd.DataFrame) -> pd.DataFrame:
    """{name: metrics frame} (or one frame) -> one tidy frame, a row per (run, epoch), column `run`."""
    runs = {"run": runs} if isinstance(runs, pd.DataFrame) else runs
    return pd.concat([df.assign(run=name) for name, df in runs.items()], ignore_index=True)


def _palette(names) -> dict:
    return {name: COLORS.get(name, f"C{i}") for i, name in enumerate(names)}


def _runs_lineplot(tidy: pd.DataFrame, y: str, ax, legend: bool, **kw) -> None:
    """One line per run of column y against epoch (no aggregation: a run has one row per epoch)."""
    names = list(dict.fromkeys(tidy["run"]))
    sns.lineplot(tidy, x="epoch", y=y, hue="run", hue_order=names, palette=_palette(names), marker="o",
                 errorbar=None, estimator=None, ax=ax, legend=legend, **kw)


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
    tidy = runs_long(runs)
    with sns.axes_style(THEME):
        fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
        for ax, col, title in zip(axes, ("loss", "mse", "kl", "beta"), ("total loss", "MSE", "KL (per frame)", "beta")):
            _runs_lineplot(tidy, col, ax, legend=ax is axes[0], markersize=4)
            ax.set(title=title, xlabel="epoch", ylabel="")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for ax, col in zip(axes[:3], ("loss", "mse", "kl")):
            _auto_yscale(ax, tidy[col].to_numpy(float))
        fig.tight_layout()
    return fig


def plot_val_psnr(runs: dict[str, pd.DataFrame] | pd.DataFrame, ax=None):
    """Validation PSNR per epoch, one line per run, and the copy-first-frame baseline (dashed)."""
    tidy = runs_long(runs).dropna(subset=["val_psnr"])
    with sns.axes_style(THEME):
        fig, ax = _fig_ax(ax, (6, 3))
        _runs_lineplot(tidy, "val_psnr", ax, legend=True)
        baselines = sorted({float(b) for b in tidy.get("copy_first_psnr", pd.Series(dtype=float)).dropna()})
        for b in baselines:   # the same video for every run: one line (older metrics.csv: none)
            ax.axhline(b, color="k", ls="--", lw=1, label="copy first frame" if b == baselines[0] else None)
        ax.set(xlabel="epoch", ylabel="val PSNR (dB)", title="validation rollout from frame 0, z ~ N(0, I)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    return fig


def plot_tfr_vs_loss(runs: dict[str, pd.DataFrame] | pd.DataFrame, column: str = "loss"):
    """The teacher-forcing ratio on a second axis against a training curve (`column` of the
    metrics: loss or mse), shared epochs."""
    tidy = runs_long(runs)
    names = list(dict.fromkeys(tidy["run"]))
    colors = _palette(names)
    with sns.axes_style(THEME):
        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax2 = ax.twinx()
        _runs_lineplot(tidy, column, ax, legend=False, markersize=4)
        for line, name in zip(ax.get_lines(), names):     # seaborn draws the runs in hue order
            line.set_label(f"{name}: {column}")
        for name in names:
            d = tidy[tidy["run"] == name]
            ax2.step(d["epoch"], d["tfr"], where="mid", ls="--", color=colors[name], alpha=0.7, label=f"{name}: tfr")
        ax.set(xlabel="epoch", ylabel=f"training {column}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _auto_yscale(ax, tidy[column].to_numpy(float))
        ax2.set(ylabel="teacher-forcing ratio", ylim=(-0.05, 1.05))
        ax2.grid(False)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper right")
        fig.tight_layout()
    return fig


def _model_and_baseline_lines(ax, values, baseline, color: str, fmt: str) -> np.ndarray:
    """A per-frame metric of the model and of the copy-first-frame baseline against frames 1..T-1
    (frame 0 is the given frame), each labelled with its mean; returns the model's values (T-1,)."""
    t = np.arange(1, len(values))
    vals = np.asarray(values)[1:]
    ax.plot(t, vals, lw=1.2, color=color, label=f"model: mean {fmt.format(vals.mean())}")
    if baseline is not None:
        b = np.asarray(baseline)[1:]
        ax.plot(t, b, lw=1, color="grey", alpha=0.8, label=f"copy first frame: mean {fmt.format(b.mean())}")
    return vals


def plot_psnr_per_frame(psnr: np.ndarray, baseline: np.ndarray | None = None, title: str = "validation video", ax=None):
    """Per-frame PSNR (frame 0 is the given frame and is skipped), mean and min annotated."""
    fig, ax = _fig_ax(ax, (9, 3.2))
    vals = _model_and_baseline_lines(ax, psnr, baseline, "tab:blue", "{:.2f} dB")
    i = int(np.argmin(vals))
    ax.axhline(vals.mean(), color="tab:blue", ls=":", lw=1)
    ax.annotate(f"min {vals[i]:.2f} dB @ frame {i + 1}", (i + 1, vals[i]), xytext=(10, -12),
                textcoords="offset points", fontsize=8, arrowprops=dict(arrowstyle="->", lw=0.8))
    ax.set(xlabel="frame", ylabel="PSNR (dB)", title=title)
    _limit_to_uncapped(ax, vals, None if baseline is None else np.asarray(baseline)[1:])
    ax.legend(loc="upper right", fontsize=8)
    return fig


def plot_ssim_per_frame(ssim: np.ndarray, baseline: np.ndarray | None = None, title: str = "validation video", ax=None):
    """Per-frame SSIM (frame 0, the given frame, skipped), the copy-first-frame baseline's beside it."""
    fig, ax = _fig_ax(ax, (9, 2.6))
    _model_and_baseline_lines(ax, ssim, baseline, "tab:purple", "{:.3f}")
    ax.set(xlabel="frame", ylabel="SSIM", title=title)
    ax.legend(loc="upper right", fontsize=8)
    return fig


def plot_quality_per_frame(psnr, ssim, baseline_psnr=None, baseline_ssim=None, title: str = "validation video"):
    """Per-frame PSNR above, SSIM below, on one frame axis."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.4), sharex=True, height_ratios=(1.2, 1))
    plot_psnr_per_frame(psnr, baseline_psnr, title=f"per-frame PSNR and SSIM, {title}", ax=top)
    plot_ssim_per_frame(ssim, baseline_ssim, title="", ax=bottom)
    top.set_xlabel("")
    fig.tight_layout()
    return fig


def plot_runs_per_frame(per_frame: pd.DataFrame, smooth: int = 15, title: str = "validation video"):
    """Per-frame PSNR (top) and SSIM (bottom) of several runs' rollouts (`lab4.compare` rows: run,
    z, seed, frame, psnr, ssim; each run's first z-sample, plus any baseline rows), each curve a
    centred rolling mean over `smooth` frames so that the runs can be told apart."""
    first = per_frame[per_frame["z"].isin(["sample", "-"])]                # a sampled rollout (or a baseline's)
    first = first[first["seed"] == first.groupby("run")["seed"].transform("min")]
    first = first[first["frame"] > 0].copy()                             # frame 0 is given
    names = list(dict.fromkeys(first["run"]))
    for col in ("psnr", "ssim"):
        first[col] = first.groupby("run")[col].transform(lambda v: v.rolling(smooth, center=True, min_periods=1).mean())
    with sns.axes_style(THEME):
        fig, axes = plt.subplots(2, 1, figsize=(9.5, 5.6), sharex=True)
        for ax, col, label in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ssim", "SSIM")):
            sns.lineplot(first, x="frame", y=col, hue="run", hue_order=names, palette=_palette(names), lw=1.1,
                         errorbar=None, estimator=None, ax=ax, legend=ax is axes[0])
            ax.set(ylabel=f"{label}, {smooth}-frame mean")
        axes[0].set_title(f"per-frame PSNR and SSIM, {title} (z sampled, first seed)")
        axes[0].legend(fontsize=8, loc="lower left", ncol=2)
        fig.tight_layout()
    return fig


def plot_sample_spread(per_frame: pd.DataFrame, copy_first: float | None = None):
    """Each run's Kaggle-protocol val PSNR (frames 1..LAST_SCORED) for each of its K z-samples (dots) and
    for z = the prior's mean (a diamond): the spread of the prior-z score against the gap between runs."""
    scored = per_frame[(per_frame["frame"] >= 1) & (per_frame["frame"] <= LAST_SCORED) & (per_frame["z"] != "-")]
    scores = scored.groupby(["run", "z", "seed"], sort=False)["psnr"].mean().reset_index()
    names = list(dict.fromkeys(scores["run"]))
    with sns.axes_style(THEME):
        fig, ax = plt.subplots(figsize=(8.5, 0.55 * len(names) + 1.6))
        sns.stripplot(scores[scores["z"] == "sample"], x="psnr", y="run", order=names, hue="run", hue_order=names,
                      palette=_palette(names), size=7, jitter=0.15, ax=ax, legend=False)
        means = scores[scores["z"] == "mean"].set_index("run")["psnr"]
        ax.scatter(means.reindex(names), range(len(names)), marker="D", s=60, facecolor="white", edgecolor="black",
                   zorder=3, label="z = prior mean")
        averages = scores[scores["z"] == "average"].set_index("run")["psnr"]
        if len(averages):
            ax.scatter(averages.reindex(names), range(len(names)), marker="*", s=140, color="black", zorder=3,
                       label="pixel mean of the K rollouts")
        if copy_first is not None:
            ax.axvline(copy_first, color="grey", ls="--", lw=1, label=f"copy first frame {copy_first:.2f} dB")
        ax.set(xlabel=f"val PSNR, frames 1..{LAST_SCORED} (dB)", ylabel="",
               title="val PSNR of each z-sample (dots), their pixel mean (star) and z = the prior's mean (diamond)")
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
    return fig


def frames_to_uint8(frames) -> np.ndarray:
    """(T, 3, H, W) float [0, 1] or uint8 (tensor or array) -> (T, H, W, 3) uint8."""
    return to_uint8(frames).transpose(0, 2, 3, 1)


GAP = 2                      # white pixels between (and around) the frames of a strip or a GIF panel


def tile_frames(frames) -> np.ndarray:
    """n frames (n, 3, H, W), float [0, 1] or uint8 -> one (H + 2*GAP, n*(W + GAP) + GAP, 3) uint8 row,
    white gaps: torchvision's make_grid."""
    from torchvision.utils import make_grid
    import torch
    frames = torch.from_numpy(to_uint8(frames))
    if len(frames) == 1:                       # make_grid returns a single frame as it is, without the gaps
        return np.pad(frames[0].permute(1, 2, 0).numpy(), ((GAP, GAP), (GAP, GAP), (0, 0)), constant_values=255)
    row = make_grid(frames, nrow=len(frames), padding=GAP, pad_value=255)   # (3, H', W')
    return row.permute(1, 2, 0).numpy()


def side_by_side(*videos, scale: int = 1) -> np.ndarray:
    """Several (T, 3, H, W) videos -> one (T, (H + 4)*scale, (n*(W + 2) + 2)*scale, 3) uint8 video:
    frame t of each video in one row (tile_frames), 2-px white gaps."""
    vids = [to_uint8(v) for v in videos]
    T = min(len(v) for v in vids)
    out = np.stack([tile_frames(np.stack([v[t] for v in vids])) for t in range(T)])
    return out.repeat(scale, axis=1).repeat(scale, axis=2) if scale > 1 else out


def save_gif(video: np.ndarray, path, fps: int = 25) -> Path:
    """(T, H, W, 3) uint8 -> an endlessly looping GIF."""
    with atomic_path(path) as tmp:
        imageio.mimsave(tmp, list(video), duration=1000 / fps, loop=0)
    return Path(path)


def save_figure(fig, figures_dir, name: str, dpi: int = 120) -> Path | None:
    """Write `fig` as figures_dir/name (atomically); figures_dir None: do nothing, return None.
    The notebooks call it after each figure the README shows (`make figures` sets the folder)."""
    if figures_dir is None:
        return None
    path = Path(figures_dir) / name
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    return path


def frame_strip(frames, n: int = 8, ax=None, title: str | None = None):
    """n evenly spaced frames of a (T, 3, H, W) video in one row."""
    v = to_uint8(frames)                                                 # (T, 3, H, W)
    idx = np.linspace(0, len(v) - 1, n).astype(int)
    fig, ax = _fig_ax(ax, (2 * n, 1.4))
    ax.imshow(tile_frames(v[idx]))
    ax.set_xticks([GAP / 2 + (i + 0.5) * (v.shape[3] + GAP) for i in range(n)], [str(i) for i in idx])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return fig


def plot_frames_and_poses(images, labels, n: int = 8, title: str | None = None):
    """n evenly spaced frames of a video (top) above their pose images (bottom).
    images, labels: (T, 3, H, W), uint8 or float in [0, 1]."""
    fig, (a0, a1) = plt.subplots(2, 1, figsize=(2 * n, 3.2))
    frame_strip(images, n, ax=a0, title=title)
    frame_strip(labels, n, ax=a1)
    a0.set_ylabel("frame"), a1.set_ylabel("pose")
    a1.set_xlabel("frame index")
    fig.tight_layout()
    return fig


def plot_kl_check(n_samples, estimates, closed_form: float, stderr=None, ax=None):
    """A Monte-Carlo estimate of a KL divergence against its closed form, as samples accumulate.
    n_samples, estimates (and optional standard errors): 1-D arrays of the same length."""
    fig, ax = _fig_ax(ax, (7, 3))
    n, est = np.asarray(n_samples), np.asarray(estimates)
    ax.plot(n, est, marker="o", ms=3, color="tab:blue", label="Monte-Carlo estimate")
    if stderr is not None:
        se = np.asarray(stderr)
        ax.fill_between(n, est - 2 * se, est + 2 * se, color="tab:blue", alpha=0.2, label="+/- 2 s.e.")
    ax.axhline(closed_form, color="k", ls="--", lw=1, label=f"closed form {closed_form:.2f}")
    ax.set(xscale="log", xlabel="samples of z", ylabel="KL (per frame)", title="KL(q || N(0, I)): closed form vs Monte Carlo")
    ax.legend(fontsize=8)
    return fig


def plot_psnr_samples(psnr_by_name: dict, baseline: np.ndarray | None = None, title: str = "same rollout, different z", ax=None):
    """Per-frame PSNR (frame 0 skipped) of several rollouts, e.g. one per noise seed."""
    fig, ax = _fig_ax(ax, (9, 3.2))
    for i, (name, psnr) in enumerate(psnr_by_name.items()):
        vals = np.asarray(psnr)[1:]
        ax.plot(np.arange(1, len(vals) + 1), vals, lw=1, color=f"C{i}", label=f"{name}: mean {vals.mean():.2f} dB")
    if baseline is not None:
        b = np.asarray(baseline)[1:]
        ax.plot(np.arange(1, len(b) + 1), b, lw=1, color="grey", alpha=0.8, label=f"copy first frame: mean {b.mean():.2f} dB")
    ax.set(xlabel="frame", ylabel="PSNR (dB)", title=title)
    _limit_to_uncapped(ax, *[np.asarray(v)[1:] for v in psnr_by_name.values()],
                       None if baseline is None else np.asarray(baseline)[1:])
    ax.legend(loc="upper right", fontsize=8)
    return fig


def plot_video_grid(videos: dict, n: int = 8, title: str | None = None):
    """One frame strip per named video (T, 3, H, W), the same n frame indices in every row."""
    fig, axes = plt.subplots(len(videos), 1, figsize=(2 * n, 1.3 * len(videos) + 0.4), squeeze=False)
    for ax, (name, v) in zip(axes[:, 0], videos.items()):
        frame_strip(v, n, ax=ax)
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    return fig


def plot_sequence_psnr(psnr_rows: np.ndarray, baseline_rows: np.ndarray | None = None, seq_len: int = SEQ_LEN,
                       last_scored: int = LAST_SCORED):
    """Per-frame PSNR of a submission, one panel per test sequence; the frames Kaggle does not
    score (the given frame 0 and frames after `last_scored`) are shaded."""
    psnr = np.asarray(psnr_rows).reshape(-1, seq_len)
    base = None if baseline_rows is None else np.asarray(baseline_rows).reshape(-1, seq_len)
    S = len(psnr)
    fig, axes = plt.subplots(1, S, figsize=(3.2 * S, 2.8), sharey=True, squeeze=False)
    t = np.arange(1, seq_len)
    for k, ax in enumerate(axes[0]):
        scored = psnr[k, 1:last_scored + 1]
        ax.plot(t, psnr[k, 1:], lw=1, color="tab:blue", label=f"model {scored.mean():.2f}")
        if base is not None:
            ax.plot(t, base[k, 1:], lw=1, color="grey", alpha=0.8, label=f"copy {base[k, 1:last_scored + 1].mean():.2f}")
        ax.axvspan(last_scored + 0.5, seq_len, color="k", alpha=0.08)
        ax.set(title=f"sequence {k}", xlabel="frame")
        ax.legend(fontsize=7, loc="upper right")
    axes[0, 0].set_ylabel("PSNR (dB)")
    _limit_to_uncapped(axes[0, 0], psnr[:, 1:], None if base is None else base[:, 1:])
    fig.tight_layout()
    return fig


def _auto_yscale(ax, values) -> None:
    """Log scale when positive values span more than a decade and a half, symlog when such a
    spread includes zeros, linear otherwise (where log ticks would be unlabelled)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    pos = v[v > 0]
    if len(pos) == 0 or pos.max() / pos.min() < 30:
        return
    if (v <= 0).any():
        ax.set_yscale("symlog", linthresh=float(pos.min()))
    else:
        ax.set_yscale("log")


def _limit_to_uncapped(ax, *arrays) -> None:
    """Frames equal to the truth score PSNR_CAP dB; keep them from squashing the curves."""
    from .score import PSNR_CAP
    vals = np.concatenate([np.ravel(a) for a in arrays if a is not None])
    vals = vals[np.isfinite(vals)]
    below = vals[vals < PSNR_CAP]
    if len(below) and len(below) < len(vals):
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, below.max() + 3)


def _fig_ax(ax, size):
    if ax is None:
        fig, ax = plt.subplots(figsize=size)
        return fig, ax
    return ax.figure, ax


def save_loss_curves(metrics: pd.DataFrame, path: Path) -> Path | None:
    """A run's loss_curves.png (plot_loss_curves of its metrics.csv), written atomically."""
    fig = plot_loss_curves(metrics)
    out = save_figure(fig, path.parent, path.name, dpi=110)
    plt.close(fig)
    return out
