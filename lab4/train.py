"""Training: the CVAE loss over 16-frame sequences with KL annealing and teacher forcing.

    lab4-train --DR <data> --save_root <ckpts> [--fast_train] [template flags] [--preset NAME]
    train(make_config("demo", DR=..., save_root=...))          # the same from Python

Writes to --save_root: config.json, metrics.csv (one row per epoch: loss, mse, kl, beta, tfr,
lr, val_psnr, ...), last.ckpt, best.ckpt (highest val PSNR), epoch=<N>.ckpt every --per_save
epochs, loss_curves.png and val/ (per-frame PSNR CSV + plot, prediction GIF).
Ctrl-C saves last.ckpt at the step reached; --ckpt_path last.ckpt resumes exactly there.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import distributed, tensorboard
from .checkpoint import (build_checkpoint, is_template_checkpoint, load_weights, non_finite_tensors, read_checkpoint,
                         rng_state, save_checkpoint, set_rng_state)
from .config import TrainConfig, check_config, clip_of_epoch
from .data import SequenceBatches, load_split
from .device import autocast, choose_precision, device_words, select_device
from .errors import Lab4Error
from .evaluate import copy_first_psnr, kaggle_mean, validate, validation_words, write_validation_outputs
from .files import move_old_run_aside, write_text_atomic
from .interrupt import SigintFlag, TrainingInterrupted
from .model import VideoCVAE, cvae_loss
from .progress import progress_bar
from .schedules import kl_beta_schedule, learning_rate, teacher_forcing_coin, teacher_forcing_ratio
from .weights import initialise_from_data, recalibrate_label_batchnorm, weight_average

SUM_KEYS = ("loss", "mse", "kl", "tf_steps", "steps")


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Adam or AdamW over every weight; with --memory_lr_scale the appearance memory's weights are a
    second group whose lr is that multiple of the schedule's (its `lr_scale`)."""
    groups = model.parameters()
    memory = getattr(model, "appearance_memory", None)
    if memory is not None and cfg.memory_lr_scale != 1.0:
        ids = {id(w) for w in memory.parameters()}
        groups = [{"params": [w for w in model.parameters() if id(w) not in ids], "lr_scale": 1.0, "lr": cfg.lr},
                  {"params": list(memory.parameters()), "lr_scale": cfg.memory_lr_scale,
                   "lr": cfg.lr * cfg.memory_lr_scale}]
    if cfg.optim == "Adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optim == "AdamW":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise Lab4Error(f"--optim {cfg.optim!r}: expected Adam or AdamW")


class Run:
    """One training run: its config, model, optimiser, data and where it stands (epoch, the
    next step within it, the epoch's running sums, the best val PSNR). train() is
    `Run(cfg).fit()`; each piece below is one named step of it, and each failure has one place:
    a bad config (check_config), resume (restore), a non-finite step (train_step), Ctrl-C
    (fit/save_interrupted), writing (record_epoch, all atomic). progress=False: no bars for this run
    (lab4.progress switches every bar off). resume: the checkpoint at cfg.ckpt_path, already read
    (lab4-train reads it once, for its config and then its state); None: read here."""

    def __init__(self, cfg: TrainConfig, progress: bool = True, on_step=None, log=print,
                 resume: dict | None = None):
        check_config(cfg)
        self.world = distributed.world_from_env()                # torchrun: this process's rank; else 1 process
        distributed.check_batch(cfg.batch_size, self.world)
        if cfg.long_clip:                                        # the last epochs' batch must divide too
            distributed.check_batch(clip_of_epoch(cfg, cfg.num_epoch - 1)[1], self.world, "--long_clip's batch")
        self.device = select_device(cfg.device, self.world.local_rank if self.world.size > 1 else None)
        distributed.start(self.world, self.device)
        self.precision_asked = cfg.precision                     # auto, or the one given
        self.precision = choose_precision(cfg.precision, self.device, cfg.amp, cfg.cpu_amp)   # fp32, bf16, fp16
        cfg = dataclasses.replace(cfg, precision=self.precision, world_size=self.world.size)  # as config.json records
        if not self.world.main:                                  # rank 0 alone logs and writes
            progress, log = False, (lambda *a: None)
        self.cfg, self.progress, self.on_step, self.log = cfg, progress, on_step, log
        if self.device.type == "cuda":
            torch.backends.cudnn.deterministic = cfg.deterministic
            torch.backends.cudnn.benchmark = not cfg.deterministic
        self.save_root = Path(cfg.save_root)
        torch.manual_seed(cfg.seed)
        model = VideoCVAE.from_config(cfg, self.device, self.world if self.world.size > 1 else None).to(self.device)
        self.model = model.to(memory_format=torch.channels_last) if cfg.channels_last else model
        self.optimizer = build_optimizer(cfg, self.model)
        self.epoch, self.batch, self.best = 0, 0, -math.inf      # the next step to take: (epoch, batch)
        self.sums = dict.fromkeys(SUM_KEYS, 0.0)                 # this epoch's running sums
        self.metrics = pd.DataFrame()
        self.last_val = None                                     # (pred, psnr, written) of the last validation
        self.resume_rng = None                                   # RNG state before the step under way
        self.overwrite = False                                   # --overwrite: move an old run aside first
        self.interrupted = SigintFlag()
        self.writer = None                                       # --tensorboard: a SummaryWriter
        self.ema, self._ema_state = None, None                   # --ema: the averaged weights (AveragedModel)
        self.autocast = autocast(self.device, self.precision)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None   # fp16 only
        self.forward_model = self.model                          # DistributedDataParallel(model) under torchrun
        if cfg.tensorboard:
            tensorboard.require()                                # before anything is written
        if cfg.ckpt_path:                                        # resume: the checkpoint if already read
            self.restore(cfg.ckpt_path, resume)

    # ---- set-up -------------------------------------------------------------------------------
    def restore(self, path, ckpt: dict | None = None) -> None:
        """Resume one of our checkpoints exactly, or start from a template checkpoint's weights
        (`ckpt`: the file at `path` already read, else it is read here). The optimiser's state comes
        back with the flags given now applied to it."""
        ckpt = read_checkpoint(path) if ckpt is None else ckpt
        if "train_state_dict" in ckpt:                           # state_dict holds the averaged weights
            load_weights(self.model, {"state_dict": ckpt["train_state_dict"]}, path)
            self._ema_state = (ckpt, int(ckpt.get("ema_n", 1)))
        else:
            load_weights(self.model, ckpt, path)
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (KeyError, ValueError) as e:
            self.log(f"lab4-train: optimizer state not restored ({e}); starting it fresh")
        for group in self.optimizer.param_groups:                # lr is set every epoch
            if group.get("weight_decay") != self.cfg.weight_decay:
                self.log(f"lab4-train: weight_decay {group.get('weight_decay')} in the checkpoint's optimizer -> "
                         f"{self.cfg.weight_decay} (--weight_decay)")
                group["weight_decay"] = self.cfg.weight_decay
        if is_template_checkpoint(ckpt):
            self.epoch = int(ckpt.get("last_epoch", 0))
        else:
            self.epoch, self.batch = int(ckpt["epoch"]), int(ckpt.get("batch_in_epoch", 0))
            self.sums.update(ckpt.get("epoch_sums", {}))
            self.best = float(ckpt.get("best_val_psnr", -math.inf))
            set_rng_state(ckpt["rng"], self.device)
            if self.scaler is not None and "grad_scaler" in ckpt:
                self.scaler.load_state_dict(ckpt["grad_scaler"])
        if (self.save_root / "metrics.csv").exists():
            metrics = pd.read_csv(self.save_root / "metrics.csv")
            self.metrics = metrics[metrics["epoch"] <= self.epoch].reset_index(drop=True)

    def load_data(self) -> None:
        """Decode (or read the cache of) the train and val frames; a fresh run starts from them."""
        cfg = self.cfg
        self.train_split = load_split(cfg.DR, "train", cfg.frame_H, cfg.frame_W, cfg.cache_dir, cfg.num_workers)
        self.val_split = load_split(cfg.DR, "val", cfg.frame_H, cfg.frame_W, cfg.cache_dir, cfg.num_workers)
        if not cfg.ckpt_path:
            initialise_from_data(self.model, cfg, self.train_split.images)
        if cfg.ema > 0:
            self.ema = weight_average(self.model, cfg.ema)
            if self._ema_state is not None:
                ckpt, n = self._ema_state
                load_weights(self.ema.module, ckpt, cfg.ckpt_path)
                self.ema.n_averaged.fill_(n)
                self._ema_state = None
        self.batches = SequenceBatches(self.train_split, cfg.train_vi_len, self.device)
        self.long_batches = self.batches.of_length(cfg.long_clip) if cfg.long_clip else None   # the same frames
        self.copy_first = kaggle_mean(copy_first_psnr(self.val_split, cfg.val_vi_len))   # the do-nothing baseline
        self.betas = kl_beta_schedule(cfg)
        if self.world.size > 1:                                  # gradients averaged over the ranks in backward()
            self.forward_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False)                          # BatchNorm statistics are over all ranks already
        if cfg.compile:                                          # the same module underneath: state_dict keys,
            self.forward_model = torch.compile(self.forward_model)   # checkpoints and EMA unchanged
        self.log(f"lab4-train: {self.device}{device_words(self.device)}, precision {self.precision}"
                 f"{' (auto)' if self.precision_asked == 'auto' else ''}; "
                 f"{len(self.train_split.images)} train frames, val video of {len(self.val_split.images)}"
                 + (f"; {self.world.size} processes of {cfg.batch_size // self.world.size} sequences each"
                    if self.world.size > 1 else ""))
        if not self.world.main:
            return
        if self.overwrite:                    # the data is good: only now does the old run move
            move_old_run_aside(self.save_root, self.log)
        self.save_root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.save_root / "config.json", json.dumps(cfg.to_dict(), indent=1))
        if cfg.tensorboard:
            self.writer = tensorboard.open_writer(self.save_root, self.epoch)

    @property
    def inference_model(self) -> VideoCVAE:
        """The weights that validation, the checkpoints' state_dict and lab4-test use."""
        return self.ema.module if self.ema is not None else self.model

    # ---- the loop -----------------------------------------------------------------------------
    def fit(self) -> dict:
        try:
            self.load_data()
            return self.loop()
        finally:
            if self.writer is not None:
                self.writer.close()
            distributed.stop()

    def loop(self) -> dict:
        with self.interrupted:               # Ctrl-C stops at a step boundary; restored on any exit
            while self.epoch < self.cfg.num_epoch:
                try:
                    row = self.train_epoch()
                except KeyboardInterrupt:
                    raise TrainingInterrupted(self.save_interrupted()) from None
                with self.interrupted.shielded():                  # metrics and checkpoints: all or none
                    self.record_epoch(row)
                if self.stop_requested():                          # Ctrl-C during validation or saving
                    self.interrupted.ignore_more()
                    raise TrainingInterrupted(self.save_root / "last.ckpt")
        return self.summary()

    def stop_requested(self) -> bool:
        """Ctrl-C seen (by any rank under torchrun: they all stop at the same step)."""
        return distributed.any_over_ranks(self.interrupted.is_set(), self.world)

    def epoch_plan(self, epoch: int) -> tuple[SequenceBatches, torch.Tensor, int, int]:
        """This epoch's sequences (of train_vi_len frames, or long_clip in the last epochs), their
        order, the clips per batch and the number of steps."""
        cfg = self.cfg
        seq_len, batch_size = clip_of_epoch(cfg, epoch)
        batches = self.long_batches if seq_len != cfg.train_vi_len else self.batches
        fast = cfg.fast_train and epoch < cfg.fast_train_epoch
        order = batches.epoch_order(epoch, cfg.seed, cfg.fast_partial if fast else cfg.partial)
        n_batches = len(order) // batch_size              # drop_last, as the template's loader
        if cfg.steps_per_epoch:
            n_batches = min(n_batches, cfg.steps_per_epoch)
        if n_batches == 0:
            raise Lab4Error(f"--batch_size {batch_size}: larger than the {len(order)} training sequences "
                            f"of {seq_len} frames")
        return batches, order, batch_size, n_batches

    def train_epoch(self) -> dict:
        """The steps from self.batch to the epoch's end, then its validation -> the metrics row."""
        cfg, epoch = self.cfg, self.epoch
        t0 = time.time()
        batches, order, batch_size, n_batches = self.epoch_plan(epoch)
        lr, beta, tfr = learning_rate(cfg, epoch), float(self.betas[epoch]), teacher_forcing_ratio(cfg, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        self.model.train()
        self.resume_rng = rng_state(self.device)                  # where Ctrl-C would resume
        bar = progress_bar(range(self.batch, n_batches), desc=f"epoch {epoch + 1}/{cfg.num_epoch}", unit="step",
                           show=self.progress, leave=False)
        with bar:
            for k in bar:
                self.resume_rng = rng_state(self.device)
                loss_value = self.train_step(batches, order[k * batch_size:(k + 1) * batch_size], beta)
                if self.stop_requested():                          # Ctrl-C: stop at this step boundary
                    raise KeyboardInterrupt
                if k % 10 == 0:
                    bar.set_postfix(loss=f"{loss_value:.4g}", beta=f"{beta:.3g}", tfr=f"{tfr:.2g}")
                if self.on_step is not None:
                    self.on_step(epoch, k, loss_value, self.model)
        recalibrate_label_batchnorm(self.inference_model, self.batches.labels)   # running stats of these
                                                                   # weights, for validation, checkpoints, lab4-test
        row = self.epoch_row(epoch, beta, tfr, lr)
        if self.world.main and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.num_epoch):
            self.validate_into(row)
        row["time_s"] = time.time() - t0
        return row

    def train_step(self, batches: SequenceBatches, idx: torch.Tensor, beta: float) -> float:
        """One optimisation step on the sequences idx of `batches`; a non-finite loss or gradient stops
        the run before the weights change (the checkpoints on disk stay the last good ones)."""
        cfg, epoch, k = self.cfg, self.epoch, self.batch
        rows = self.world.rows(len(idx))
        x, p = batches.batch(idx[rows])                                  # (B, T, 3, H, W) each: this rank's share
        memory = self.memory_frames(batches, idx, rows)
        teacher_forcing = teacher_forcing_coin(cfg, epoch, float(torch.rand(())))
        with self.autocast:
            # (B, T-1, 3, H, W), 2 x (B*(T-1), N, H, W) posterior [, 2 x (B*(T-1), N, H, W) learned prior]
            x_hat, mu, logvar, *prior = self.forward_model(x, p, teacher_forcing, memory=memory)
        loss, mse, kl = cvae_loss(x_hat, x[:, 1:], mu, logvar, beta, cfg.kl_reduction, *prior)
        if self.world.size > 1:                      # the whole batch's loss, MSE and KL: the mean over the ranks
            loss_value, mse_value, kl_value = distributed.mean_over_ranks(
                torch.stack([loss.detach(), mse.detach(), kl.detach()]), self.world).tolist()
        else:
            loss_value, mse_value, kl_value = loss.item(), mse.item(), kl.item()
        where = f"at epoch {epoch + 1} step {k + 1}; checkpoints on disk are the last good ones (try a lower --lr)"
        if not math.isfinite(loss_value):
            raise Lab4Error(f"training diverged: loss is {loss_value} {where}")
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:                  # fp16: the loss scaled up, the gradients back down
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip))
        if not math.isfinite(grad_norm) and self.scaler is None:   # fp16: the scaler skips the step
            raise Lab4Error(f"training diverged: gradient norm is {grad_norm} (loss {loss_value:.4g}) {where}")
        with self.interrupted.shielded():            # the step and its bookkeeping happen together
            if self.scaler is not None:
                self.scaler.step(self.optimizer)     # skipped when the scaled gradients overflowed
                self.scaler.update()
            else:
                self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            for key, value in (("loss", loss_value), ("mse", mse_value), ("kl", kl_value),
                               ("tf_steps", float(teacher_forcing)), ("steps", 1.0)):
                self.sums[key] += value
            self.batch, self.resume_rng = k + 1, None                   # step k is fully applied
        return loss_value

    def memory_frames(self, batches: SequenceBatches, idx: torch.Tensor, rows) -> tuple | None:
        """With --memory_gap: the (frame, pose) (B, 3, H, W) each that this rank's clips take their appearance
        memory from, 0..memory_gap frames before each clip (the gaps drawn for the whole batch, so every rank
        of a torchrun run draws the same); None without (the clip's first frame, no random number drawn)."""
        if not self.cfg.memory_gap:
            return None
        gaps = torch.randint(0, self.cfg.memory_gap + 1, (len(idx),))   # (B_global,)
        return batches.frames_before(idx[rows], gaps[rows])

    def epoch_row(self, epoch: int, beta: float, tfr: float, lr: float) -> dict:
        n = max(self.sums["steps"], 1)
        return {"epoch": epoch + 1, **{key: self.sums[key] / n for key in ("loss", "mse", "kl")},
                "beta": beta, "tfr": tfr, "lr": lr, "teacher_forced": self.sums["tf_steps"] / n,
                "steps": int(self.sums["steps"]), "val_psnr": np.nan, "val_psnr_min": np.nan,
                "copy_first_psnr": self.copy_first}

    def validate_into(self, row: dict) -> None:
        cfg = self.cfg
        pred, psnr = validate(self.inference_model, self.val_split, cfg.val_vi_len, seed=cfg.seed, progress=self.progress,
                              cpu_amp=self.precision == "bf16", z_mode=cfg.z,    # the CPU's rollouts in bf16 too
                              what=f"the validation after epoch {row['epoch']}")
        row["val_psnr"], row["val_psnr_min"] = kaggle_mean(psnr), float(psnr[1:].min())
        written = (write_validation_outputs(pred, psnr, self.val_split, self.save_root / "val", cfg.z)
                   if cfg.store_visualization else None)
        self.last_val = (pred, psnr, written)
        if self.writer is not None:
            tensorboard.log_validation_frames(self.writer, pred, self.val_split, row["epoch"])

    # ---- writing --------------------------------------------------------------------------------
    def checkpoint(self, rng: dict | None = None) -> dict:
        """The run at (self.epoch, self.batch) in primitive types."""
        cfg, ema = self.cfg, self.ema
        return build_checkpoint(
            cfg, weights=self.inference_model.state_dict(), optimizer=self.optimizer.state_dict(),
            epoch=self.epoch, batch_in_epoch=self.batch, epoch_sums=self.sums, best_val_psnr=self.best,
            rng=rng if rng is not None else rng_state(self.device),
            lr=learning_rate(cfg, min(self.epoch, cfg.num_epoch - 1)), tfr=teacher_forcing_ratio(cfg, self.epoch),
            train_weights=None if ema is None else self.model.state_dict(),
            ema_n=None if ema is None else int(ema.n_averaged),
            grad_scaler=None if self.scaler is None else self.scaler.state_dict())

    def record_epoch(self, row: dict) -> None:
        """The finished epoch: its metrics row, then last.ckpt, best.ckpt, epoch=<N>.ckpt, the log line."""
        cfg = self.cfg
        if not self.world.main:                      # the other ranks only move on
            self.epoch, self.batch, self.sums = self.epoch + 1, 0, dict.fromkeys(SUM_KEYS, 0.0)
            return
        for model in {id(m): m for m in (self.model, self.inference_model)}.values():
            refuse_non_finite_weights(model, f"after epoch {row['epoch']}")
        self.metrics = pd.concat([self.metrics, pd.DataFrame([row])], ignore_index=True)
        write_text_atomic(self.save_root / "metrics.csv", self.metrics.to_csv(index=False))
        if self.writer is not None:
            tensorboard.log_epoch(self.writer, row)
        improved = not np.isnan(row["val_psnr"]) and row["val_psnr"] > self.best
        if improved:
            self.best = row["val_psnr"]
        self.epoch, self.batch, self.sums = self.epoch + 1, 0, dict.fromkeys(SUM_KEYS, 0.0)
        ck = self.checkpoint()
        save_checkpoint(ck, self.save_root / "last.ckpt")
        if improved:
            save_checkpoint(ck, self.save_root / "best.ckpt")
        if self.epoch % cfg.per_save == 0:
            save_checkpoint(ck, self.save_root / f"epoch={self.epoch}.ckpt")
        self.log(f"epoch {self.epoch:>3}/{cfg.num_epoch}  loss {row['loss']:.5f}  mse {row['mse']:.5f}  "
                 f"kl {row['kl']:.4g}  beta {row['beta']:.3f}  tfr {row['tfr']:.2f}  lr {row['lr']:.2e}"
                 f"{validation_words(row['val_psnr'], self.copy_first)}  ({row['time_s']:.1f}s)")

    def save_interrupted(self) -> Path:
        """Ctrl-C inside an epoch: last.ckpt at the step reached (whole steps only), shielded
        from a further Ctrl-C; resuming it continues exactly there."""
        with self.interrupted.shielded():
            if not self.world.main:
                self.interrupted.ignore_more()
                return self.save_root / "last.ckpt"
            recalibrate_label_batchnorm(self.inference_model, self.batches.labels)   # a checkpoint lab4-test can use
            path = save_checkpoint(self.checkpoint(self.resume_rng), self.save_root / "last.ckpt")
            self.interrupted.ignore_more()
            return path

    def summary(self) -> dict:
        out = {"save_root": str(self.save_root), "metrics": self.metrics, "best_val_psnr": self.best,
               "last_ckpt": str(self.save_root / "last.ckpt"), "best_ckpt": str(self.save_root / "best.ckpt")}
        if not self.world.main:
            return out
        if len(self.metrics):
            from .plots import save_loss_curves
            save_loss_curves(self.metrics, self.save_root / "loss_curves.png")
        if self.last_val is not None:
            pred, psnr, written = self.last_val  # the last validation is the final epoch's
            out.update(written or write_validation_outputs(pred, psnr, self.val_split, self.save_root / "val",
                                                          self.cfg.z))
        return out


def refuse_non_finite_weights(model: torch.nn.Module, when: str) -> None:
    """Never write a checkpoint with NaN or infinite weights over a good one."""
    bad = non_finite_tensors(model.state_dict())
    if bad:
        raise Lab4Error(f"training diverged: {bad[0]} holds NaN or infinite values {when}; nothing written, "
                        f"the checkpoints on disk are the last good ones (try a lower --lr)")


def train(cfg: TrainConfig, progress: bool = True, on_step=None, log=print) -> dict:
    """Train (or resume from cfg.ckpt_path). Returns {metrics, best_val_psnr, last_ckpt, ...}.
    on_step(epoch, step, loss, model) is called after every optimisation step (tests, notebooks,
    benchmarks/bench_quality.py). Ctrl-C raises TrainingInterrupted (a KeyboardInterrupt) once
    last.ckpt holds the run."""
    return Run(cfg, progress=progress, on_step=on_step, log=log).fit()


if __name__ == "__main__":            # torchrun -m lab4.train ...: the lab4-train command line
    import sys
    from .cli import train_command
    sys.exit(train_command())
