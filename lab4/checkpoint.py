"""Checkpoints: primitive types and tensors only (`torch.load(weights_only=True)` reads them),
a version key, written atomically (temp file + rename) so a crash never leaves half a file.

Ours: {version, format, config, state_dict, optimizer, epoch, batch_in_epoch, epoch_sums,
best_val_psnr, rng, and the template's keys lr, tfr, last_epoch; with --ema train_state_dict and
ema_n}. With --prior learned the state_dicts also hold learned_prior.* (the five modules' keys
are the template's either way).
The template's: {state_dict, optimizer, lr, tfr, last_epoch}; it loads for testing (and as
weights to continue from) with the model size read off the weights' shapes.
"""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import torch

from .config import CHECKPOINT_VERSION, TrainConfig, make_config
from .errors import Lab4Error
from .files import atomic_path
from .model import VideoCVAE


# Classes a weights_only load may rebuild besides tensors and plain types: student trainers often
# save their argparse `args` inside the checkpoint, and a Namespace is only a bag of attributes.
SAFE_CLASSES = [argparse.Namespace]


def save_checkpoint(obj: dict, path) -> Path:
    """Write atomically; a failed write is one line and the previous file at `path` stays whole."""
    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as e:          # torch's zip writer reports a short write as RuntimeError
            raise OSError(str(e).splitlines()[0] if str(e) else "write failed") from None
    return Path(path)


def read_checkpoint(path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise Lab4Error(f"--ckpt_path {path}: no such file")
    try:
        with torch.serialization.safe_globals(SAFE_CLASSES):
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        _refuse_pickled_classes(path)
        reason = (str(e).splitlines() or [type(e).__name__])[0][:160] or type(e).__name__
        raise Lab4Error(f"--ckpt_path {path}: not a readable checkpoint ({reason})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise Lab4Error(f"--ckpt_path {path}: expected a dict with a 'state_dict' (a lab4 or template checkpoint)")
    if "version" in ckpt and ckpt["version"] > CHECKPOINT_VERSION:
        raise Lab4Error(f"--ckpt_path {path}: checkpoint version {ckpt['version']} is newer than this lab4 ({CHECKPOINT_VERSION})")
    return ckpt


def _refuse_pickled_classes(path: Path) -> None:
    """A checkpoint refused for holding pickled objects: name their classes and the way out."""
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:                     # not a zip checkpoint at all: the caller's message says so
        return
    allowed = {f"{c.__module__}.{c.__qualname__}" for c in SAFE_CLASSES}
    unsafe = [name for name in unsafe if name not in allowed]
    if unsafe:
        raise Lab4Error(f"--ckpt_path {path}: holds pickled objects of class {', '.join(unsafe)}, which the safe "
                        f"(weights_only) loader refuses; in a session you trust, re-save it with plain types: "
                        f"ck = torch.load(path, weights_only=False); torch.save({{'state_dict': ck['state_dict']}}, "
                        f"'plain.ckpt')") from None


def load_model_for_flags(cfg: TrainConfig, explicit: dict, device) -> tuple[VideoCVAE, TrainConfig]:
    """`lab4-test` and `lab4-train --test`: --ckpt_path's model with the flags given now. Model-size
    flags (and --prior) must match the checkpoint; --sigmoid_output given now replaces the
    checkpoint's; --compile is the flag's, not the training run's."""
    if not cfg.ckpt_path:
        raise Lab4Error("--ckpt_path: required (the checkpoint to evaluate)")
    ckpt = read_checkpoint(cfg.ckpt_path)
    refuse_other_size(config_of(ckpt), explicit, cfg.ckpt_path)
    overrides = {k: explicit[k] for k in ("sigmoid_output",) if k in explicit}
    model, mcfg, _ = load_model(cfg.ckpt_path, device, ckpt=ckpt, compile=cfg.compile, **overrides)
    return model, mcfg


# ---- the run's state in primitive types ----------------------------------------------------------
def rng_state(device: torch.device) -> dict:
    """The CPU generator's state and, on CUDA, that of the one device the run uses (not every GPU's:
    a run saved on an 8-GPU machine resumes on a 1-GPU one)."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if device.type == "cuda" and cuda is not None:
        if isinstance(cuda, (list, tuple)):          # checkpoint version <= 3: every GPU's state; the
            cuda = cuda[0] if cuda else None         # run used the first (--device cuda), as every rank now
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)


def build_checkpoint(cfg: TrainConfig, *, weights: dict, optimizer: dict, epoch: int, batch_in_epoch: int,
                     epoch_sums: dict, best_val_psnr: float, rng: dict, lr: float, tfr: float,
                     train_weights: dict | None = None, ema_n: int | None = None,
                     grad_scaler: dict | None = None) -> dict:
    """A training run at (epoch, batch_in_epoch) in the layout the module docstring describes:
    `weights` are what inference uses (the moving average with --ema), `train_weights` the raw ones
    that a resume continues from (with --ema only)."""
    averaged = {} if train_weights is None else {"train_state_dict": train_weights, "ema_n": int(ema_n)}
    return {"version": CHECKPOINT_VERSION, "format": "lab4", "config": cfg.to_dict(), **averaged,
            "state_dict": weights, "optimizer": optimizer, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
            "epoch_sums": dict(epoch_sums), "best_val_psnr": best_val_psnr, "rng": rng,
            "lr": lr, "tfr": tfr, "last_epoch": epoch, **({"grad_scaler": grad_scaler} if grad_scaler is not None else {})}


def is_template_checkpoint(ckpt: dict) -> bool:
    return "version" not in ckpt


def dims_from_state_dict(sd: dict) -> dict:
    """Model size read off the weights (works for template checkpoints, which store no config)."""
    try:
        return dict(F_dim=sd["frame_transformation.6.weight"].shape[0],
                    L_dim=sd["label_transformation.4.conv2.weight"].shape[0],
                    N_dim=sd["Gaussian_Predictor.6.weight"].shape[0] // 2,
                    D_out_dim=sd["Decoder_Fusion.5.weight"].shape[0])
    except KeyError as e:
        raise Lab4Error(f"checkpoint state_dict lacks {e} (expected the template's module names)") from None


def config_of(ckpt: dict) -> TrainConfig:
    """The config a checkpoint was trained with; for a template one, the template preset (the one
    place that says what the template does: unbounded output, no colour anchor, ...) and the
    dims of its weights."""
    if not is_template_checkpoint(ckpt):
        return TrainConfig.from_dict(ckpt["config"])
    return make_config("template", **dims_from_state_dict(ckpt["state_dict"]))


def load_weights(model: VideoCVAE, ckpt: dict, path="checkpoint") -> None:
    """strict=True; a size mismatch is reported as one line naming both sizes."""
    want, have = {k: tuple(v.shape) for k, v in model.state_dict().items()}, ckpt["state_dict"]
    mismatch = [k for k in want if k in have and tuple(have[k].shape) != want[k]]
    if mismatch:
        ck, mine = dims_from_state_dict(have), dims_from_state_dict(model.state_dict())
        raise Lab4Error(f"--ckpt_path {path}: checkpoint is a different model size ({_fmt(ck)}) than requested ({_fmt(mine)})")
    try:
        model.load_state_dict(have, strict=True)
    except RuntimeError as e:
        detail = "; ".join(line.strip() for line in str(e).splitlines()[1:] if line.strip())[:300]
        raise Lab4Error(f"--ckpt_path {path}: weights do not match the model ({detail})") from None
    bad = non_finite_tensors(have)
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise Lab4Error(f"--ckpt_path {path}: weights hold NaN or infinite values ({bad[0]}{more}); the run that "
                        f"saved them diverged: use an earlier checkpoint")


def non_finite_tensors(state_dict: dict) -> list[str]:
    """Names of the floating-point tensors that hold a NaN or an infinity."""
    return [k for k, v in state_dict.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def refuse_other_size(ckpt_cfg: TrainConfig, flags: dict, path) -> None:
    """Model-size flags (and --prior, which adds weights) given on the command line must match the
    checkpoint's model."""
    if "prior" in flags and flags["prior"] != ckpt_cfg.prior:
        raise Lab4Error(f"--ckpt_path {path}: checkpoint was trained with --prior {ckpt_cfg.prior}; --prior "
                        f"{flags['prior']} needs other weights (train a new run, or drop --prior)")
    differ = {k: v for k, v in flags.items() if k in ckpt_cfg.model_dims() and v != getattr(ckpt_cfg, k)}
    if differ:
        raise Lab4Error(f"--ckpt_path {path}: checkpoint is a different model size "
                        f"({_fmt({k: getattr(ckpt_cfg, k) for k in differ})}) than the flags ask for ({_fmt(differ)})")


def _fmt(d: dict) -> str:
    return " ".join(f"--{k} {v}" for k, v in d.items())


def load_model(path, device="cpu", ckpt: dict | None = None, **overrides) -> tuple[VideoCVAE, TrainConfig, dict]:
    """A checkpoint's model, ready for inference: (model in eval mode, config, raw checkpoint);
    `ckpt`: the file already read (read_checkpoint), else it is read here; `overrides` replace config
    fields before the model is built (e.g. compile=True)."""
    ckpt = read_checkpoint(path) if ckpt is None else ckpt
    cfg = config_of(ckpt)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    model = VideoCVAE.from_config(cfg, device)
    load_weights(model, ckpt, path)
    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval(), cfg, ckpt
