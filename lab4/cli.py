"""Every command line of lab4, at the edge of the package: lab4-train, lab4-test, lab4-score,
lab4-synth and lab4-sweep. lab4-train and lab4-test share one parser: every flag of the template's
Trainer.py / Tester.py with the same name and meaning, then ours. Only flags given on the command
line override the preset (and, when resuming, the checkpoint's config). Each tool reports bad input
as one line `<tool>: error: ...` and exits 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from .config import CHOICES, PRESETS, TrainConfig, make_config, resolve_resume_config
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


def _choice(ap, name, help_):
    """A flag whose allowed values are config.CHOICES[name] (defined once, there)."""
    _flag(ap, name, str, help_, choices=CHOICES[name])


def _switch(ap, name, help_):
    """An on/off flag: --name / --no-name."""
    _flag(ap, name, None, help_, action=argparse.BooleanOptionalAction)


def build_parser(prog: str, test_tool: bool = False) -> argparse.ArgumentParser:
    ap = OneLineParser(prog=prog, argument_default=argparse.SUPPRESS,
                       description="Conditional VAE video prediction (NYCU DL Lab 4), template-compatible flags.")
    _template_flags(ap.add_argument_group("the template's flags"))
    _lab4_flags(ap.add_argument_group("lab4's additions"), test_tool)
    return ap


def _template_flags(t) -> None:
    """Every flag of Trainer.py / Tester.py, with the template's name and meaning."""
    _flag(t, "batch_size", int, "sequences per step")
    _flag(t, "lr", float, "initial learning rate")
    _flag(t, "device", str, "auto, cpu, cuda or cuda:<n> (template default: cuda)")
    _choice(t, "optim", "optimizer")
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


def _lab4_flags(o, test_tool: bool) -> None:
    """lab4's own flags, then those of one tool only (lab4-test or lab4-train)."""
    o.add_argument("--preset", choices=["default", *PRESETS], help="starting values: " + ", ".join(PRESETS) + " (default: default)")
    _flag(o, "seed", int, "random seed")
    _switch(o, "sigmoid_output", "bound the generated frame to [0, 1] with a sigmoid")
    _switch(o, "colour_anchor", "add the first frame's mean colour to every generated frame (the studio "
            "colour carried from frame 0; default on, --no-colour_anchor: the template's output)")
    _choice(o, "init_output", "Generator output starts at the train frames' mean colour (data) or PyTorch's init")
    _choice(o, "init_posterior", "q(z|x,p) starts at N(0, I), KL ~0 (prior) or at PyTorch's init")
    _choice(o, "lr_scheduler", "learning-rate schedule")
    _flag(o, "min_lr", float, "cosine floor")
    _flag(o, "weight_decay", float, "weight decay")
    _flag(o, "grad_clip", float, "gradient-norm clip")
    _choice(o, "kl_reduction", "KL scale: sum (template) or mean")
    _switch(o, "kl_reach_stop", "ramps end exactly at beta=1")
    _flag(o, "kl_beta_min", float, "floor under beta")
    _choice(o, "tf_coin", "teacher-forcing coin per batch or per epoch (template)")
    _switch(o, "channels_last", "NHWC memory format")
    _flag(o, "time_chunk", int, "time steps per batched training call (-1: 8 on CPU, all on CUDA)")
    _choice(o, "precision", "training precision: auto = bf16 on CUDA >= 8.0, fp16 (+ GradScaler) on 7.x, fp32 "
            "below and on the CPU (bf16 with --cpu_amp)")
    _switch(o, "deterministic", "cuDNN deterministic algorithms, no benchmark mode (exact resume on CUDA)")
    _switch(o, "amp", "mixed precision on CUDA with --precision auto (--no-amp: fp32)")
    _switch(o, "cpu_amp", "bfloat16 autocast on CPU, training and rollouts (opt-in: ~1.9x where the CPU has "
            "AVX512-BF16/AMX; changes the numerics)")
    _flag(o, "ema", float, "decay of the weights' moving average used to validate, save and test (0: off)")
    _choice(o, "prior", "the prior over z: fixed N(0, I) (template) or learned p(z_t | x_{t-1}, p_t) (SVG-LP)")
    _choice(o, "z", "rollouts take z as a sample of the prior or its mean")
    _switch(o, "appearance_memory", "the decoder sees frame 0's features beside the previous frame's at every "
            "step (adds appearance_memory.* weights; the five modules unchanged)")
    _switch(o, "memory_follows_pose", "with --appearance_memory: frame 0's features move with the body (the pose "
            "image's centre, frame 0 -> now), so frame 0's clothes lie where the body is now")
    _switch(o, "memory_body_code", "with --appearance_memory: frame 0's features averaged over its body (its pose "
            "image) and painted where each step's pose image shows the body, wherever the dancer has gone")
    _flag(o, "memory_lr_scale", float, "with --appearance_memory: its weights' lr as a multiple of --lr")
    _flag(o, "memory_gap", int, "with --appearance_memory, training: the memory's frame is taken 0..N frames "
          "before the clip's first (as frame 0 lies up to 600 back at test time); 0: the clip's first frame")
    _flag(o, "feedback_noise", float, "training without teacher forcing: std of noise added to the fed-back frame")
    _switch(o, "detach_feedback", "training without teacher forcing: stop the gradient at the fed-back frame")
    _flag(o, "long_clip", int, "0: off; else the last --long_clip_epochs epochs train on clips of this many frames "
          "(the batch cut to keep the frames per step)")
    _flag(o, "long_clip_epochs", int, "final epochs on long clips (with --long_clip)")
    _flag(o, "val_every", int, "validate every N epochs")
    _flag(o, "steps_per_epoch", int, "cap on steps per epoch (0 = all)")
    _flag(o, "cache_dir", str, "decoded-frame cache folder")
    _switch(o, "compile", "torch.compile the training forward and the rollout's per-frame step (CUDA "
            "graphs on a GPU); off: compiling takes minutes on a CPU, see benchmarks/RESULTS.md")
    _switch(o, "tensorboard", "also log metrics and validation frames to <save_root>/tensorboard "
            "(needs the tensorboard package)")
    o.add_argument("--progress", action=argparse.BooleanOptionalAction,
                   help="progress bars (default: on; --no-progress or LAB4_PROGRESS=0: off)")
    if test_tool:
        o.add_argument("--val", action="store_true", help="also evaluate the validation video (PSNR CSV, plot, GIF)")
        o.add_argument("--samples", type=int, metavar="K", help="with --val: also roll the val video out with K "
                       "z-sequences and report their mean, best and worst (a diagnostic; the submission uses --seed)")
        o.add_argument("--average", type=int, metavar="K", help="roll each sequence out K times (z-sequences seeded "
                       "--seed, --seed+1, ...) and write the per-pixel mean: the best estimate under the score's MSE "
                       "(default 1: one rollout; K times the time)")
        o.add_argument("--average_ckpts", "--average-ckpts", metavar="PATH[,PATH...]", help="other checkpoints of the "
                       "same run (e.g. its last saves): the mean is over --ckpt_path and these, K rollouts each")
    else:
        o.add_argument("--overwrite", action="store_true", help="train from scratch into a --save_root that holds a run")


EXTRA_FLAGS = ("val", "overwrite", "samples", "average", "average_ckpts", "progress")


def parse_config(parser, argv=None) -> tuple[TrainConfig, dict, dict]:
    """(config, the flags given explicitly, tool-only flags). Raises Lab4Error on bad values."""
    given = vars(parser.parse_args(argv))
    extra = {k: given.pop(k) for k in EXTRA_FLAGS if k in given}
    if extra.get("progress") is False:
        from .progress import set_progress
        set_progress(False)
    preset = given.pop("preset", "default")
    try:
        cfg = make_config(preset, **given)
    except (ValueError, TypeError) as e:
        raise Lab4Error(str(e)) from None
    return cfg, given, extra


# ---- lab4-train ------------------------------------------------------------------------------
def train_main(argv=None, process_exits_after: bool = False) -> int:
    """lab4-train. process_exits_after (the console script): after an interrupted run is saved,
    further Ctrl-C presses are ignored until the process has exited."""
    from .device import out_of_memory_as_error
    from .interrupt import TrainingInterrupted
    parser = build_parser("lab4-train")
    try:
        cfg, explicit, extra = parse_config(parser, argv)
        if cfg.test:
            from .checkpoint import load_model_for_flags
            from .device import select_device
            evaluate_val_video(cfg, load_model_for_flags(cfg, explicit, select_device(cfg.device))[0])
            return 0
        run = _training_run(cfg, explicit, bool(extra.get("overwrite")), process_exits_after)
        with out_of_memory_as_error(f"training at --batch_size {run.cfg.batch_size} on {run.device}: "
                                    f"lower --batch_size (or --time_chunk)"):
            res = run.fit()
    except Lab4Error as e:
        print(f"lab4-train: error: {e}", file=sys.stderr)
        return 2
    except TrainingInterrupted as e:
        print(f"\nlab4-train: interrupted; saved {e.saved} (resume with --ckpt_path {e.saved})", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\nlab4-train: interrupted before training started; nothing saved", file=sys.stderr)
        return 130
    if run.world.main:
        print(f"done: best val PSNR {res['best_val_psnr']:.3f} dB; checkpoints in {res['save_root']}")
    return 0


def _training_run(cfg: TrainConfig, explicit: dict, overwrite: bool, process_exits_after: bool):
    """The Run a lab4-train command asks for: a resume continues the checkpoint's config; a folder
    that holds a run is refused unless --overwrite (which moves the old run aside)."""
    from .checkpoint import read_checkpoint
    from .train import Run
    last, resume = Path(cfg.save_root) / "last.ckpt", None
    if cfg.ckpt_path:
        resume = read_checkpoint(cfg.ckpt_path)                  # read once: its config, then its state
        cfg = resolve_resume_config(cfg, explicit, resume)
    elif last.exists() and not overwrite:
        raise Lab4Error(f"--save_root {cfg.save_root}: already holds a training run ({last}); resume it with "
                        f"--ckpt_path {last}, choose another --save_root, or pass --overwrite")
    run = Run(cfg, resume=resume)
    run.overwrite = overwrite and not cfg.ckpt_path
    run.interrupted.process_exits_after = process_exits_after
    return run


def train_command() -> int:
    """The `lab4-train` console script: train_main() in a process of its own, which may therefore set
    the process-wide allocator thresholds that keep freed memory for the next CPU step
    (lab4/memory.py; harmless on a GPU, where the activations are not in host memory)."""
    from .memory import keep_freed_memory
    keep_freed_memory()
    return train_main(process_exits_after=True)


def evaluate_val_video(cfg: TrainConfig, model, samples: int = 1, average: int = 1, more_models=()) -> dict:
    """`lab4-train --test` and `lab4-test --val`: the model's val rollout(s), guarded, written to
    <save_root>/val (lab4.evaluate.evaluate_checkpoint)."""
    from .data import load_split
    from .evaluate import evaluate_checkpoint
    val = load_split(cfg.DR, "val", cfg.frame_H, cfg.frame_W, cfg.cache_dir, cfg.num_workers)
    return evaluate_checkpoint(model, cfg, val, samples, average=average, more_models=more_models)


def _average_flag(extra: dict, cfg: TrainConfig) -> int:
    """--average K: a positive count; more than one rollout needs z drawn (z = mean repeats itself)."""
    average = extra.get("average", 1)
    if average < 1:
        raise Lab4Error(f"--average {average}: expected a positive number of rollouts")
    if (average > 1 or extra.get("average_ckpts")) and cfg.z != "sample":
        flag = f"--average {average}" if average > 1 else "--average_ckpts"
        raise Lab4Error(f"{flag}: expected --z sample (with --z {cfg.z} every rollout is the same)")
    return average


# ---- lab4-test -------------------------------------------------------------------------------
def test_main(argv=None) -> int:
    """lab4-test: the template's Tester.py flags; writes pred_seq<k>.gif and submission.csv in
    --save_root, and with --val [--samples K] the val video's outputs in <save_root>/val; --average K
    [--average_ckpts ...] writes the mean of K rollouts (of each checkpoint) instead of one."""
    from .checkpoint import load_model_for_flags
    from .data import load_split
    from .device import select_device
    from .infer import predict_test, write_test_outputs
    parser = build_parser("lab4-test", test_tool=True)
    try:
        cfg, explicit, extra = parse_config(parser, argv)
        samples, average = extra.get("samples"), _average_flag(extra, cfg)
        if samples is not None and (samples < 1 or not extra.get("val")):
            raise Lab4Error(f"--samples {samples}: expected a positive number of z-sequences, with --val")
        device = select_device(cfg.device)
        model, _ = load_model_for_flags(cfg, explicit, device)
        more = [load_model_for_flags(dataclasses.replace(cfg, ckpt_path=p), explicit, device)[0]
                for p in filter(None, (extra.get("average_ckpts") or "").split(","))]
        if extra.get("val"):
            evaluate_val_video(cfg, model, samples or 1, average, more)
        test = load_split(cfg.DR, "test", cfg.frame_H, cfg.frame_W, cfg.cache_dir, cfg.num_workers)
        pred = predict_test(model, test, seed=cfg.seed, cpu_amp=cfg.cpu_amp, z_mode=cfg.z, average=average,
                            more_models=more)
        path = write_test_outputs(pred, cfg.save_root, what=f"--ckpt_path {cfg.ckpt_path}")
        mean_words = f", each the mean of {average * (1 + len(more))} rollouts" if average > 1 or more else ""
        print(f"wrote {path} ({pred.shape[0] * pred.shape[1]} rows{mean_words}) and pred_seq0..{len(pred) - 1}.gif")
    except Lab4Error as e:
        print(f"lab4-test: error: {e}", file=sys.stderr)
        return 2
    return 0


# ---- lab4-score ------------------------------------------------------------------------------
def score_main(argv=None) -> int:
    """lab4-score --solution GT --submission SUB [--baseline]: the Kaggle score of a submission.csv."""
    from .score import copy_first_frame, kaggle_score, read_solution, read_submission
    ap = argparse.ArgumentParser(prog="lab4-score", description="Score a submission.csv like Kaggle does.")
    ap.add_argument("--solution", required=True,
                    help="ground truth: a CSV in the submission format, or a uint8 .npy (S, T, 3, H, W) such as "
                         "lab4-synth's test_solution.npy")
    ap.add_argument("--submission", required=True, help="the submission.csv to score")
    ap.add_argument("--baseline", action="store_true", help="also score copying the first frame")
    args = ap.parse_args(argv)
    try:
        sol = read_solution(args.solution)
        sub = read_submission(args.submission, n_rows=len(sol))
        res = kaggle_score(sol, sub)
    except Lab4Error as e:
        print(f"lab4-score: error: {e}", file=sys.stderr)
        return 2
    print(f"score {res['score']:.3f} dB  (public {res['public']:.3f}, private {res['private']:.3f}, "
          f"{res['frames']} frames)")
    if args.baseline:
        base = kaggle_score(sol, copy_first_frame(sol))
        print(f"copy-first-frame baseline {base['score']:.3f} dB  -> model {res['score'] - base['score']:+.3f} dB")
    return 0


# ---- lab4-synth ------------------------------------------------------------------------------
def synth_main(argv=None) -> int:
    """lab4-synth --out DIR [--preset mini|demo|full]: the synthetic dataset in the Kaggle layout."""
    from .synth import PRESETS as SYNTH_PRESETS, STYLES as SYNTH_STYLES, generate_dataset
    ap = argparse.ArgumentParser(prog="lab4-synth", description="Write a synthetic Lab 4 dataset "
                                 "(same layout as the Kaggle data) plus test_solution.npy.")
    ap.add_argument("--out", required=True, help="output folder (new, empty, or a previous synth output)")
    ap.add_argument("--preset", default="mini", choices=sorted(SYNTH_PRESETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--style", default="demo", choices=sorted(SYNTH_STYLES),
                    help="demo (default); travel: mostly walking across and turning, more clothing contrast; "
                         "stripes: travel's moves in a shirt with ~1-pixel dark stripes")
    ap.add_argument("--height", type=int, help="native PNG height (default: the preset's)")
    ap.add_argument("--width", type=int, help="native PNG width (default: the preset's)")
    ap.add_argument("--workers", type=int, help="processes (default: all cores)")
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bar (also: LAB4_PROGRESS=0)")
    a = ap.parse_args(argv)
    for flag, val in (("--height", a.height), ("--width", a.width)):
        if val is not None and (val <= 0 or val % 2):
            ap.error(f"{flag} must be a positive multiple of 2, got {val}")
    if a.workers is not None and a.workers < 1:
        ap.error(f"--workers must be at least 1, got {a.workers}")
    try:
        out = generate_dataset(a.out, a.preset, a.seed, a.height, a.width, a.workers, not a.no_progress, a.style)
    except Lab4Error as e:
        print(f"lab4-synth: error: {e}", file=sys.stderr)
        return 2
    p = SYNTH_PRESETS[a.preset]
    print(f"lab4-synth: wrote {p.n_train} train, {p.n_val} val, {p.n_test}x{p.test_len} test frames to {out}")
    return 0


# ---- lab4-sweep ------------------------------------------------------------------------------
def sweep_main(argv=None) -> int:
    """lab4-sweep: lab4-train's flags, any with comma-separated values; one run per combination."""
    import pandas as pd
    from .sweep import __doc__ as sweep_doc, sweep
    ap = argparse.ArgumentParser(prog="lab4-sweep", description=sweep_doc.split("\n\n")[0],
                                 epilog="Every other flag is lab4-train's (see lab4-train --help).")
    ap.add_argument("--runs_per_gpu", type=int, default=3, help="concurrent runs per GPU (default 3)")
    own, rest = ap.parse_known_args(argv)
    try:
        table = sweep(rest, own.runs_per_gpu)
    except Lab4Error as e:
        print(f"lab4-sweep: error: {e}", file=sys.stderr)
        return 2
    with pd.option_context("display.width", 200, "display.max_colwidth", 80):
        print(table.drop(columns="folder").to_string(index=False))
    failed = table["status"].str.startswith("FAILED").sum()
    if failed:
        print(f"lab4-sweep: {failed} of {len(table)} runs failed (their train.log says why)", file=sys.stderr)
    return 1 if failed else 0
