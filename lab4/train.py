"""Training: the CVAE loss over 16-frame sequences with KL annealing and teacher forcing.

    lab4-train --DR <data> --save_root <ckpts> [--fast_train] [template flags] [--preset NAME]

Writes to --save_root: config.json, metrics.csv (one row per epoch: loss, mse, kl, beta, tfr,
lr, val_psnr, ...), last.ckpt, best.ckpt (highest val PSNR), epoch=<N>.ckpt every --per_save
epochs, loss_curves.png and val/ (per-frame PSNR CSV + plot, prediction GIF).
Ctrl-C saves last.ckpt at the step reached; --ckpt_path last.ckpt resumes exactly there.
"""
from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .checkpoint import (config_of, is_template_checkpoint, load_weights, read_checkpoint, refuse_other_size,
                         save_checkpoint)
from .config import CHECKPOINT_VERSION, TrainConfig
from .data import SequenceBatches, load_split
from .errors import Lab4Error
from .files import write_text_atomic
from .memory import keep_freed_memory
from .infer import copy_first_psnr, kaggle_mean, select_device, validate, write_validation_outputs
from .model import (VideoCVAE, autocast_for, cvae_loss, init_output_head, init_posterior_at_prior,
                    recalibrate_label_batchnorm)
from .schedules import kl_beta_schedule, learning_rate, teacher_forcing_coin, teacher_forcing_ratio

SUM_KEYS = ("loss", "mse", "kl", "tf_steps", "steps")


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    if cfg.optim == "Adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optim == "AdamW":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise Lab4Error(f"--optim {cfg.optim!r}: expected Adam or AdamW")


def initialise_from_data(model: VideoCVAE, cfg: TrainConfig, train_split) -> None:
    """The start of a fresh run (not a resume): the output head at the training frames' mean
    colour, the posterior at the prior (lab4/model.py says why); each can be switched off."""
    if cfg.init_output == "data":
        init_output_head(model, train_split.images.mean(axis=(0, 2, 3)) / 255.0)   # (3,) in [0, 1]
    if cfg.init_posterior == "prior":
        init_posterior_at_prior(model)


def check_config(cfg: TrainConfig) -> None:
    """Refuse bad values up front, one line each, before anything is written."""
    try:
        kl_beta_schedule(cfg)
        learning_rate(cfg, 0)
        teacher_forcing_coin(cfg, 0, 0.0)
    except ValueError as e:
        raise Lab4Error(str(e)) from None
    for name in ("batch_size", "num_epoch", "per_save", "train_vi_len", "val_vi_len", "val_every"):
        if getattr(cfg, name) < 1:
            raise Lab4Error(f"--{name} {getattr(cfg, name)}: expected a positive integer")
    for name in ("partial", "fast_partial"):
        if not 0 < getattr(cfg, name) <= 1:
            raise Lab4Error(f"--{name} {getattr(cfg, name)}: expected a fraction in (0, 1]")
    for name, choices in (("init_output", ("data", "default")), ("init_posterior", ("prior", "default"))):
        if getattr(cfg, name) not in choices:
            raise Lab4Error(f"--{name} {getattr(cfg, name)!r}: expected one of {', '.join(choices)}")
    if cfg.train_vi_len < 2:
        raise Lab4Error(f"--train_vi_len {cfg.train_vi_len}: expected at least 2 frames")
    if not cfg.save_root:
        raise Lab4Error("--save_root: required (the output folder)")


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


class _SigintFlag(threading.Event):
    """Within `with _SigintFlag()`, Ctrl-C sets this flag; the loop stops at the next step
    boundary (so a checkpoint never holds half a step). A second Ctrl-C interrupts at once.
    The previous handler is back on any exit, an exception's included."""

    def __init__(self):
        super().__init__()
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        self.restore()

    def _handle(self, signum, frame):
        if self.is_set():
            self.restore()
            raise KeyboardInterrupt
        self.set()

    def restore(self):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


def train(cfg: TrainConfig, progress: bool = True, on_step=None, log=print) -> dict:
    """Train (or resume from cfg.ckpt_path). Returns {metrics, best_val_psnr, last_ckpt, ...}.
    on_step(epoch, step, loss, model) is called after every optimisation step (tests, notebooks,
    benchmarks/bench_quality.py)."""
    check_config(cfg)
    device = select_device(cfg.device)
    save_root = Path(cfg.save_root)
    torch.manual_seed(cfg.seed)
    model = VideoCVAE.from_config(cfg).to(device)
    model.time_chunk = cfg.time_chunk if cfg.time_chunk >= 0 else (8 if device.type == "cpu" else 0)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg, model)
    start_epoch, start_batch, sums, best = 0, 0, dict.fromkeys(SUM_KEYS, 0.0), -math.inf
    metrics = pd.DataFrame()

    if cfg.ckpt_path:                                   # resume (ours) or continue from template weights
        ckpt = read_checkpoint(cfg.ckpt_path)
        load_weights(model, ckpt, cfg.ckpt_path)
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
        except (KeyError, ValueError) as e:
            log(f"lab4-train: optimizer state not restored ({e}); starting it fresh")
        if is_template_checkpoint(ckpt):
            start_epoch = int(ckpt.get("last_epoch", 0))
        else:
            start_epoch, start_batch = int(ckpt["epoch"]), int(ckpt.get("batch_in_epoch", 0))
            sums.update(ckpt.get("epoch_sums", {}))
            best = float(ckpt.get("best_val_psnr", -math.inf))
            _set_rng_state(ckpt["rng"], device)
        if (save_root / "metrics.csv").exists():
            metrics = pd.read_csv(save_root / "metrics.csv")
            metrics = metrics[metrics["epoch"] <= start_epoch].reset_index(drop=True)

    train_split = load_split(cfg.DR, "train", cfg.frame_H, cfg.frame_W, cfg.cache_dir, cfg.num_workers)
    val_split = load_split(cfg.DR, "val", cfg.frame_H, cfg.frame_W, cfg.cache_dir, cfg.num_workers)
    if not cfg.ckpt_path:
        initialise_from_data(model, cfg, train_split)
    batches = SequenceBatches(train_split, cfg.train_vi_len, device)
    copy_first = kaggle_mean(copy_first_psnr(val_split, cfg.val_vi_len))   # the do-nothing baseline, once
    betas = kl_beta_schedule(cfg)
    autocast = autocast_for(device, cuda_amp=cfg.amp, cpu_amp=cfg.cpu_amp)   # bf16 (--amp on CUDA, --cpu_amp)
    save_root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(save_root / "config.json", json.dumps(cfg.to_dict(), indent=1))
    last_val = None

    def checkpoint(epoch: int, batch_in_epoch: int, rng: dict) -> dict:
        return {"version": CHECKPOINT_VERSION, "format": "lab4", "config": cfg.to_dict(),
                "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                "epoch": epoch, "batch_in_epoch": batch_in_epoch, "epoch_sums": dict(sums),
                "best_val_psnr": best, "rng": rng,
                "lr": learning_rate(cfg, min(epoch, cfg.num_epoch - 1)),
                "tfr": teacher_forcing_ratio(cfg, epoch), "last_epoch": epoch}

    with _SigintFlag() as interrupted:  # Ctrl-C stops at a step boundary; restored on any exit
        for epoch in range(start_epoch, cfg.num_epoch):
            t0 = time.time()
            fast = cfg.fast_train and epoch < cfg.fast_train_epoch
            order = batches.epoch_order(epoch, cfg.seed, cfg.fast_partial if fast else cfg.partial)
            n_batches = len(order) // cfg.batch_size          # drop_last, as the template's loader
            if cfg.steps_per_epoch:
                n_batches = min(n_batches, cfg.steps_per_epoch)
            if n_batches == 0:
                raise Lab4Error(f"--batch_size {cfg.batch_size}: larger than the {len(order)} training sequences")
            lr, beta, tfr = learning_rate(cfg, epoch), float(betas[epoch]), teacher_forcing_ratio(cfg, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            model.train()
            bar = tqdm(range(start_batch, n_batches), desc=f"epoch {epoch + 1}/{cfg.num_epoch}", unit="step",
                       disable=not progress, leave=False)
            resume_k, resume_rng = start_batch, _rng_state(device)   # where Ctrl-C would resume
            try:
                for k in bar:
                    resume_k, resume_rng = k, _rng_state(device)
                    x, p = batches.batch(order[k * cfg.batch_size:(k + 1) * cfg.batch_size])   # (B, T, 3, H, W)
                    teacher_forcing = teacher_forcing_coin(cfg, epoch, float(torch.rand(())))
                    with autocast:
                        x_hat, mu, logvar = model(x, p, teacher_forcing)
                    loss, mse, kl = cvae_loss(x_hat, x[:, 1:], mu, logvar, beta, cfg.kl_reduction)
                    loss_value = loss.item()
                    if not math.isfinite(loss_value):
                        raise Lab4Error(f"training diverged: loss is {loss_value} at epoch {epoch + 1} step {k + 1}; "
                                        f"checkpoints on disk are the last good ones (try a lower --lr)")
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    optimizer.step()
                    sums["loss"] += loss_value
                    sums["mse"] += mse.item()
                    sums["kl"] += kl.item()
                    sums["tf_steps"] += float(teacher_forcing)
                    sums["steps"] += 1
                    resume_k, resume_rng = k + 1, None                  # step k is fully applied
                    if interrupted.is_set():                            # Ctrl-C: stop at this step boundary
                        raise KeyboardInterrupt
                    if k % 10 == 0:
                        bar.set_postfix(loss=f"{loss_value:.4g}", beta=f"{beta:.3g}", tfr=f"{tfr:.2g}")
                    if on_step is not None:
                        on_step(epoch, k, loss_value, model)
            except KeyboardInterrupt:
                bar.close()
                recalibrate_label_batchnorm(model, batches.labels)        # a checkpoint lab4-test can use
                rng = resume_rng if resume_rng is not None else _rng_state(device)
                save_checkpoint(checkpoint(epoch, resume_k, rng), save_root / "last.ckpt")
                raise
            bar.close()
            start_batch = 0
            recalibrate_label_batchnorm(model, batches.labels)   # running stats of the current weights, for
                                                                 # validation, checkpoints and lab4-test
            row = {"epoch": epoch + 1, **{key: sums[key] / max(sums["steps"], 1) for key in ("loss", "mse", "kl")},
                   "beta": beta, "tfr": tfr, "lr": lr, "teacher_forced": sums["tf_steps"] / max(sums["steps"], 1),
                   "steps": int(sums["steps"]), "val_psnr": np.nan, "val_psnr_min": np.nan,
                   "copy_first_psnr": copy_first}
            if (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.num_epoch:
                pred, psnr = validate(model, val_split, cfg.val_vi_len, seed=cfg.seed, progress=progress, cpu_amp=cfg.cpu_amp)
                row["val_psnr"], row["val_psnr_min"] = kaggle_mean(psnr), float(psnr[1:].min())
                written = write_validation_outputs(pred, psnr, val_split, save_root / "val") if cfg.store_visualization else None
                last_val = (pred, psnr, written)
            row["time_s"] = time.time() - t0
            metrics = pd.concat([metrics, pd.DataFrame([row])], ignore_index=True)
            write_text_atomic(save_root / "metrics.csv", metrics.to_csv(index=False))
            sums = dict.fromkeys(SUM_KEYS, 0.0)
            improved = not np.isnan(row["val_psnr"]) and row["val_psnr"] > best
            if improved:
                best = row["val_psnr"]
            ck = checkpoint(epoch + 1, 0, _rng_state(device))
            save_checkpoint(ck, save_root / "last.ckpt")
            if improved:
                save_checkpoint(ck, save_root / "best.ckpt")
            if (epoch + 1) % cfg.per_save == 0:
                save_checkpoint(ck, save_root / f"epoch={epoch + 1}.ckpt")
            val_txt = validation_words(row["val_psnr"], copy_first)
            if interrupted.is_set():                                    # Ctrl-C during validation/saving
                raise KeyboardInterrupt
            log(f"epoch {epoch + 1:>3}/{cfg.num_epoch}  loss {row['loss']:.5f}  mse {row['mse']:.5f}  kl {row['kl']:.4g}  "
                f"beta {beta:.3f}  tfr {tfr:.2f}  lr {lr:.2e}{val_txt}  ({row['time_s']:.1f}s)")

    summary = {"save_root": str(save_root), "metrics": metrics, "best_val_psnr": best,
               "last_ckpt": str(save_root / "last.ckpt"), "best_ckpt": str(save_root / "best.ckpt")}
    if len(metrics):
        _save_loss_curves(metrics, save_root / "loss_curves.png")
    if last_val is not None:
        pred, psnr, written = last_val  # the last validation is the final epoch's
        summary.update(written or write_validation_outputs(pred, psnr, val_split, save_root / "val"))
    return summary


def validation_words(val_psnr: float, copy_first: float) -> str:
    """The log's validation text: the score beside the copy-first-frame baseline, and in words
    when the model is below it (it predicts worse than repeating frame 0: a collapse)."""
    if np.isnan(val_psnr):
        return ""
    text = f"  val PSNR {val_psnr:.2f} dB (copy-first {copy_first:.2f}, {val_psnr - copy_first:+.2f})"
    if val_psnr < copy_first:
        text += ("  BELOW copy-first-frame: the rollout is worse than repeating frame 0 "
                 "(collapsed or not yet learnt; see val/pred_val.gif with --store_visualization)")
    return text


def train_or_load(cfg: TrainConfig, reuse: bool = True, progress: bool = True) -> pd.DataFrame:
    """The metrics of a finished run of exactly this config in cfg.save_root (same config.json,
    all epochs present); otherwise train it. Lets notebooks re-run without re-training."""
    run = Path(cfg.save_root)
    if reuse and (run / "config.json").is_file() and (run / "metrics.csv").is_file():
        done = pd.read_csv(run / "metrics.csv")
        saved = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))  # newer fields: defaults
        if saved.to_dict() == cfg.to_dict() and len(done) == cfg.num_epoch:
            print(f"{run}: finished run found, reusing it (reuse=False trains again)")
            return done
    return train(cfg, progress=progress)["metrics"]


def _save_loss_curves(metrics: pd.DataFrame, path: Path) -> None:
    import matplotlib.pyplot as plt
    from .plots import plot_loss_curves, save_figure
    fig = plot_loss_curves(metrics)
    save_figure(fig, path.parent, path.name, dpi=110)
    plt.close(fig)


def resolve_resume_config(cfg: TrainConfig, explicit: dict) -> TrainConfig:
    """Resuming one of our checkpoints continues its config; flags given now override it, and
    model-size flags that differ from the checkpoint are refused."""
    ckpt = read_checkpoint(cfg.ckpt_path)
    if is_template_checkpoint(ckpt):
        return cfg
    base = config_of(ckpt)
    refuse_other_size(base, explicit, cfg.ckpt_path)
    for k, v in explicit.items():
        setattr(base, k, v)
    base.ckpt_path = cfg.ckpt_path
    return base


def evaluate_checkpoint(cfg: TrainConfig) -> dict:
    """--test: the val video's per-frame PSNR for --ckpt_path, written to save_root/val."""
    from .checkpoint import load_model
    if not cfg.ckpt_path:
        raise Lab4Error("--test needs --ckpt_path (the checkpoint to evaluate)")
    model, _, _ = load_model(cfg.ckpt_path, select_device(cfg.device))
    val = load_split(cfg.DR, "val", cfg.frame_H, cfg.frame_W, cfg.cache_dir, cfg.num_workers)
    pred, psnr = validate(model, val, cfg.val_vi_len, seed=cfg.seed, cpu_amp=cfg.cpu_amp)
    return write_validation_outputs(pred, psnr, val, Path(cfg.save_root) / "val")


def main(argv=None) -> int:
    from .cli import build_parser, parse_config
    parser = build_parser("lab4-train")
    try:
        cfg, explicit, extra = parse_config(parser, argv)
        if cfg.test:
            res = evaluate_checkpoint(cfg)
            print(f"val PSNR {res['val_psnr']:.3f} dB (copy-first-frame {res['baseline_psnr']:.3f} dB)")
            return 0
        if cfg.ckpt_path:
            cfg = resolve_resume_config(cfg, explicit)
        elif (Path(cfg.save_root) / "last.ckpt").exists() and not extra.get("overwrite"):
            last = Path(cfg.save_root) / "last.ckpt"
            raise Lab4Error(f"--save_root {cfg.save_root}: already holds a training run ({last}); resume it with "
                            f"--ckpt_path {last}, choose another --save_root, or pass --overwrite")
        res = train(cfg)
    except Lab4Error as e:
        print(f"lab4-train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nlab4-train: interrupted; saved {Path(cfg.save_root) / 'last.ckpt'} "
              f"(resume with --ckpt_path {Path(cfg.save_root) / 'last.ckpt'})", file=sys.stderr)
        return 130
    print(f"done: best val PSNR {res['best_val_psnr']:.3f} dB; checkpoints in {res['save_root']}")
    return 0


def command() -> int:
    """The `lab4-train` console script: main() in a process of its own, which may therefore set the
    process-wide allocator thresholds that keep freed memory for the next CPU step (lab4/memory.py;
    harmless on a GPU, where the activations are not in host memory)."""
    keep_freed_memory()
    return main()


if __name__ == "__main__":
    sys.exit(command())
