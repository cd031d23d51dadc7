"""The command line shared by lab4-train and lab4-test: every flag of the template's Trainer.py /
Tester.py with the same name and meaning, then ours. Only flags given on the command line
override the preset (and, when resuming, the checkpoint's config)."""
from __future__ import annotations

import argparse
import sys

from .config import PRESETS, TrainConfig, make_config
from .errors import Lab4Error

_D = TrainConfig()


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag on one line, naming it."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _flag(ap, name, type_=None, help_="", **kw):
    default = getattr(_D, name, None)
    if type_ is not None:
        kw["type"] = type_
    ap.add_argument(f"--{name}", help=f"{help_} (default: {default})", **kw)


def build_parser(prog: str, test_tool: bool = False) -> argparse.ArgumentParser:
    ap = OneLineParser(prog=prog, argument_default=argparse.SUPPRESS,
                       description="Conditional VAE video prediction (NYCU DL Lab 4), template-compatible flags.")
    t = ap.add_argument_group("the template's flags")
    _flag(t, "batch_size", int, "sequences per step")
    _flag(t, "lr", float, "initial learning rate")
    _flag(t, "device", str, "auto, cpu, cuda or cuda:<n> (template default: cuda)")
    _flag(t, "optim", str, "optimizer", choices=["Adam", "AdamW"])
    _flag(t, "gpu", int, "number of GPUs (accepted; one is used)")
    t.add_argument("--test", action="store_true", help="evaluate --ckpt_path on the validation video only")
    t.add_argument("--store_visualization", action="store_true", help="write val GIF/PSNR plot at every validation")
    t.add_argument("--DR", type=str, required=True, help="dataset root (Kaggle layout; see data/README.md)")
    t.add_argument("--save_root", type=str, required=True, help="output folder")
    _flag(t, "num_workers", int, "processes that decode PNGs into the cache")
    _flag(t, "num_epoch", int, "training epochs")
    _flag(t, "per_save", int, "save epoch=<N>.ckpt every N epochs")
    _flag(t, "partial", float, "fraction of the training frames used")
    _flag(t, "train_vi_len", int, "frames per training sequence")
    _flag(t, "val_vi_len", int, "frames of the validation rollout")
    _flag(t, "frame_H", int, "frame height")
    _flag(t, "frame_W", int, "frame width")
    _flag(t, "F_dim", int, "frame feature channels")
    _flag(t, "L_dim", int, "pose feature channels")
    _flag(t, "N_dim", int, "latent channels")
    _flag(t, "D_out_dim", int, "decoder feature channels")
    _flag(t, "tfr", float, "initial teacher-forcing ratio")
    _flag(t, "tfr_sde", int, "epoch from which the tfr decays")
    _flag(t, "tfr_d_step", float, "tfr decay per epoch")
    _flag(t, "ckpt_path", str, "checkpoint to resume (train) or test (lab4 or template format)")
    t.add_argument("--fast_train", action="store_true", help="train the first fast_train_epoch epochs on fast_partial of the data")
    _flag(t, "fast_partial", float, "data fraction while fast training")
    _flag(t, "fast_train_epoch", int, "epochs of fast training")
    _flag(t, "kl_anneal_type", str, "Cyclical, Monotonic or None")
    _flag(t, "kl_anneal_cycle", int, "cycles (Cyclical)")
    _flag(t, "kl_anneal_ratio", float, "rising fraction of each cycle")
    o = ap.add_argument_group("lab4's additions")
    o.add_argument("--preset", choices=["default", *PRESETS], help="starting values: " + ", ".join(PRESETS) + " (default: default)")
    _flag(o, "seed", int, "random seed")
    _flag(o, "sigmoid_output", None, "bound the generated frame to [0, 1] with a sigmoid", action=argparse.BooleanOptionalAction)
    _flag(o, "colour_anchor", None, "add the first frame's mean colour to every generated frame (the studio "
          "colour carried from frame 0; default on, --no-colour_anchor: the template's output)", action=argparse.BooleanOptionalAction)
    _flag(o, "init_output", str, "Generator output starts at the train frames' mean colour (data) or PyTorch's init",
          choices=["data", "default"])
    _flag(o, "init_posterior", str, "q(z|x,p) starts at N(0, I), KL ~0 (prior) or at PyTorch's init",
          choices=["prior", "default"])
    _flag(o, "lr_scheduler", str, "learning-rate schedule", choices=["multistep", "cosine", "constant"])
    _flag(o, "min_lr", float, "cosine floor")
    _flag(o, "weight_decay", float, "weight decay")
    _flag(o, "grad_clip", float, "gradient-norm clip")
    _flag(o, "kl_reduction", str, "KL scale: sum (template) or mean", choices=["sum", "mean"])
    _flag(o, "kl_reach_stop", None, "ramps end exactly at beta=1", action=argparse.BooleanOptionalAction)
    _flag(o, "kl_beta_min", float, "floor under beta")
    _flag(o, "tf_coin", str, "teacher-forcing coin per batch or per epoch (template)", choices=["batch", "epoch"])
    _flag(o, "channels_last", None, "NHWC memory format", action=argparse.BooleanOptionalAction)
    _flag(o, "time_chunk", int, "time steps per batched training call (-1: 8 on CPU, all on CUDA)")
    _flag(o, "precision", str, "training precision: auto = bf16 on CUDA >= 8.0, fp16 (+ GradScaler) on 7.x, fp32 "
          "below and on the CPU (bf16 with --cpu_amp)", choices=["auto", "fp32", "bf16", "fp16"])
    _flag(o, "deterministic", None, "cuDNN deterministic algorithms, no benchmark mode (exact resume on CUDA)",
          action=argparse.BooleanOptionalAction)
    _flag(o, "amp", None, "mixed precision on CUDA with --precision auto (--no-amp: fp32)",
          action=argparse.BooleanOptionalAction)
    _flag(o, "cpu_amp", None, "bfloat16 autocast on CPU, training and rollouts (opt-in: ~1.9x where the CPU has "
          "AVX512-BF16/AMX; changes the numerics)", action=argparse.BooleanOptionalAction)
    _flag(o, "ema", float, "decay of the weights' moving average used to validate, save and test (0: off)")
    _flag(o, "prior", str, "the prior over z: fixed N(0, I) (template) or learned p(z_t | x_{t-1}, p_t) (SVG-LP)",
          choices=["fixed", "learned"])
    _flag(o, "z", str, "rollouts take z as a sample of the prior or its mean", choices=["sample", "mean"])
    _flag(o, "val_every", int, "validate every N epochs")
    _flag(o, "steps_per_epoch", int, "cap on steps per epoch (0 = all)")
    _flag(o, "cache_dir", str, "decoded-frame cache folder")
    _flag(o, "compile", None, "torch.compile the training forward and the rollout's per-frame step (CUDA "
          "graphs on a GPU); off: compiling takes minutes on a CPU, see benchmarks/RESULTS.md",
          action=argparse.BooleanOptionalAction)
    _flag(o, "tensorboard", None, "also log metrics and validation frames to <save_root>/tensorboard "
          "(needs the tensorboard package)", action=argparse.BooleanOptionalAction)
    if test_tool:
        o.add_argument("--val", action="store_true", help="also evaluate the validation video (PSNR CSV, plot, GIF)")
        o.add_argument("--samples", type=int, metavar="K", help="with --val: also roll the val video out with K "
                       "z-sequences and report their mean, best and worst (a diagnostic; the submission uses --seed)")
    else:
        o.add_argument("--overwrite", action="store_true", help="train from scratch into a --save_root that holds a run")
    return ap


EXTRA_FLAGS = ("val", "overwrite", "samples")


def parse_config(parser, argv=None) -> tuple[TrainConfig, dict, dict]:
    """(config, the flags given explicitly, tool-only flags). Raises Lab4Error on bad values."""
    given = vars(parser.parse_args(argv))
    extra = {k: given.pop(k) for k in EXTRA_FLAGS if k in given}
    preset = given.pop("preset", "default")
    try:
        cfg = make_config(preset, **given)
    except (ValueError, TypeError) as e:
        raise Lab4Error(str(e)) from None
    return cfg, given, extra
