"""Per-epoch schedules: KL weight beta, teacher-forcing ratio, learning rate.

All are pure functions of the config and the (0-based) epoch, so a resumed run recomputes them
exactly and a checkpoint needs to store only the epoch.
"""
from __future__ import annotations

import math

import numpy as np

from .config import TrainConfig, refuse_unknown_choice


def frange_cycle_linear(n_iter: int, start: float = 0.0, stop: float = 1.0, n_cycle: int = 4,
                        ratio: float = 0.5) -> np.ndarray:
    """Fu et al. (2019)'s cyclical schedule, as in their code: one beta per step.

    The n_iter steps are split into n_cycle periods; in each, beta rises linearly from `start`
    by (stop - start) / (period * ratio) per step while it is <= stop, then holds at `stop`.
    Two traps are kept here on purpose (see `kl_beta_schedule` for the fixes): beta is exactly
    `start` (0) at every cycle start, and with ratio=1 the ramp is cut one step before `stop`
    (70 steps, 10 cycles -> max 6/7 = 0.857).
    """
    betas = np.ones(n_iter) * stop
    period = n_iter / n_cycle
    step = (stop - start) / (period * ratio)
    for c in range(n_cycle):
        v, i = start, 0
        while v <= stop and int(i + c * period) < n_iter:
            betas[int(i + c * period)] = v
            v += step
            i += 1
    return betas


def frange_cycle_reaching(n_iter: int, start: float = 0.0, stop: float = 1.0, n_cycle: int = 4,
                          ratio: float = 0.5) -> np.ndarray:
    """Like `frange_cycle_linear`, but each ramp ends exactly at `stop` on its last rising step:
    the first round(period * ratio) steps of a period (at least 2 where the period allows) go
    start -> stop inclusive, then hold. Cycle starts stay at `start`."""
    betas = np.ones(n_iter) * stop
    period = n_iter / n_cycle
    rise = min(max(2, int(round(period * ratio))), max(1, int(period)))
    for c in range(n_cycle):
        first = int(round(c * period))
        for i in range(rise):
            if first + i >= n_iter:
                break
            betas[first + i] = start + (stop - start) * (i / (rise - 1) if rise > 1 else 0.0)
    return betas


def kl_beta_schedule(cfg: TrainConfig) -> np.ndarray:
    """One beta per epoch for cfg.kl_anneal_type (Cyclical, Monotonic, None)."""
    n = cfg.num_epoch
    refuse_unknown_choice("kl_anneal_type", cfg.kl_anneal_type)
    if cfg.kl_anneal_type == "None":
        return np.ones(n)
    cycles = cfg.kl_anneal_cycle if cfg.kl_anneal_type == "Cyclical" else 1
    if cycles < 1 or not (0 < cfg.kl_anneal_ratio <= 1):
        raise ValueError("--kl_anneal_cycle must be >= 1 and --kl_anneal_ratio in (0, 1]")
    if cfg.kl_reach_stop:  # a cycle needs 2 epochs to rise at all: more cycles than n // 2 is capped
        betas = frange_cycle_reaching(n, 0.0, 1.0, n_cycle=min(cycles, max(1, n // 2)), ratio=cfg.kl_anneal_ratio)
    else:
        betas = frange_cycle_linear(n, 0.0, 1.0, n_cycle=cycles, ratio=cfg.kl_anneal_ratio)
    return np.maximum(betas, cfg.kl_beta_min)


def teacher_forcing_ratio(cfg: TrainConfig, epoch: int) -> float:
    """tfr used during (0-based) `epoch`: cfg.tfr until epoch tfr_sde - 1, then minus tfr_d_step
    per epoch, never below 0 (the template's update after each epoch, in closed form)."""
    steps = max(0, epoch - cfg.tfr_sde + 1)
    return float(max(0.0, round(cfg.tfr - cfg.tfr_d_step * steps, 12)))


def teacher_forcing_coin(cfg: TrainConfig, epoch: int, batch_coin) -> bool:
    """Whether a batch is teacher-forced. cfg.tf_coin "batch": one coin per batch (`batch_coin`,
    a uniform draw in [0, 1)); "epoch": one coin per epoch, as the template tosses it, drawn from a
    generator seeded by (seed, epoch) so a resumed epoch gets the same coin."""
    refuse_unknown_choice("tf_coin", cfg.tf_coin)
    tfr = teacher_forcing_ratio(cfg, epoch)
    if cfg.tf_coin == "epoch":
        import torch
        g = torch.Generator().manual_seed(cfg.seed * 7_919 + epoch)
        return bool(torch.rand((), generator=g) < tfr)
    return bool(batch_coin < tfr)


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """Learning rate for (0-based) `epoch`."""
    refuse_unknown_choice("lr_scheduler", cfg.lr_scheduler)
    if cfg.lr_scheduler == "multistep":  # the template's MultiStepLR(milestones=[2, 5], gamma=0.1)
        return cfg.lr * 0.1 ** sum(epoch >= m for m in cfg.lr_milestones)
    if cfg.lr_scheduler == "cosine":
        t = min(epoch, cfg.num_epoch) / max(1, cfg.num_epoch)
        return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * t))
    return cfg.lr                        # constant
