"""Quality benchmark: what a user sees in the first minutes of training, at full model dims on the CPU.

    python benchmarks/bench_quality.py                     # `make bench-quality` (~50-70 min on 2 cores)
    python benchmarks/bench_quality.py --recipes reference,quick --seeds 1,2
    python benchmarks/bench_quality.py --quick             # tiny sizes, development only

For each recipe and seed it trains from scratch on the same data and records learning curves: the
Kaggle-protocol validation PSNR (the 630-frame rollout from frame 0 with z ~ N(0, I), mean over
frames 1..600) against optimizer steps and against wall-clock minutes of training (evaluation time
excluded), with the copy-first-frame PSNR of the same video for reference.

Data: `data/synth-quality`, the demo preset drawn with seed 7 (the package's defaults were tuned on
`data/synth-demo`, seed 0: this set is held out from that tuning). Generated on first use.

Recipes (RECIPES below): the template-style reference (benchmarks/reference.py's step, the
template's PNG Dataset, unbounded output, batch 2, Adam 1e-3, beta 1, no teacher forcing); lab4 at
the template's quick-check flags (the command in the README's issue 12: 2 epochs on half the data,
KL None, tfr 0, lr 1e-3) with our defaults, with PyTorch's initialisation (how it was before the
data-derived start), with the unbounded head and with the raw weights instead of their moving
average (`--ema 0`); and `--preset quick`.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (ROOT, _complete, add_common_args, apply_threads, load_avg, machine_info, now,  # noqa: E402
                    quiet_progress, write_json)
from lab4.config import MEMORY_OFF  # noqa: E402

QUICK_DATA = ROOT / "data" / "synth-quality-mini"
# Held-out datasets (never tuned on): name -> (folder, synth seed, synth style). "quality" is the demo
# look with another seed; "travel" (issue 26) mostly walks across and turns, in higher-contrast clothes;
# "stripes" (issue 26) moves as travel does in a shirt with ~1-pixel stripes, the fine detail to keep.
HELD_OUT = {"quality": (ROOT / "data" / "synth-quality", 7, "demo"),
            "travel": (ROOT / "data" / "synth-travel", 11, "travel"),
            "stripes": (ROOT / "data" / "synth-stripes", 13, "stripes")}

# every switch of the appearance memory off: quick before 6o/6p. The recipes below name all of them
# (the keys of lab4.config.QUICK_MEMORY, tests/test_quality.py), so a change of quick's default leaves them as they are
NO_MEMORY = dict(MEMORY_OFF)
# The quick-check command: `lab4-train --DR .. --save_root .. --device cpu --num_epoch 2
# --partial 0.5 --per_save 1 --kl_anneal_type None --tfr 0 --num_workers 2 --lr 1e-3`
TEMPLATE_FLAGS = dict(num_epoch=2, partial=0.5, per_save=1, kl_anneal_type="None", tfr=0.0, lr=1e-3)
RECIPES = {
    "reference": dict(kind="reference"),
    "lab4 template flags": dict(kind="lab4", preset="default", flags=TEMPLATE_FLAGS),
    "lab4 template flags, PyTorch init": dict(kind="lab4", preset="default",
                                              flags={**TEMPLATE_FLAGS, "init_output": "default",
                                                     "init_posterior": "default"}),
    "lab4 template flags, unbounded": dict(kind="lab4", preset="default",
                                           flags={**TEMPLATE_FLAGS, "sigmoid_output": False}),
    "lab4 template flags, raw weights": dict(kind="lab4", preset="default", flags={**TEMPLATE_FLAGS, "ema": 0.0}),
    "quick": dict(kind="lab4", preset="quick", flags={}),
    # issue 26's levers for the long rollout, each on top of --preset quick (the memory's: on NO_MEMORY)
    "quick, no memory": dict(kind="lab4", preset="quick", flags=NO_MEMORY),
    "quick, appearance memory": dict(kind="lab4", preset="quick", flags={**NO_MEMORY, "appearance_memory": True}),
    "quick, memory following the pose": dict(kind="lab4", preset="quick",
                                              flags={**NO_MEMORY, "appearance_memory": True, "memory_follows_pose": True}),
    "quick, memory with frame 0's body code": dict(kind="lab4", preset="quick",
                                                   flags={**NO_MEMORY, "appearance_memory": True, "memory_body_code": True}),
    "quick, memory at 10x lr": dict(kind="lab4", preset="quick",
                                    flags={**NO_MEMORY, "appearance_memory": True, "memory_lr_scale": 10.0}),
    "quick, memory following the pose at 10x lr": dict(kind="lab4", preset="quick", flags={
        **NO_MEMORY, "appearance_memory": True, "memory_follows_pose": True, "memory_lr_scale": 10.0}),
    # the memory's frame taken 0..300 frames before the clip in training, as frame 0 lies far back at test time
    "quick, memory from up to 300 frames back": dict(kind="lab4", preset="quick",
                                                     flags={**NO_MEMORY, "appearance_memory": True, "memory_gap": 300}),
    "quick, memory following the pose from up to 300 frames back": dict(kind="lab4", preset="quick", flags={
        **NO_MEMORY, "appearance_memory": True, "memory_follows_pose": True, "memory_gap": 300}),
    "quick, detached feedback": dict(kind="lab4", preset="quick", flags={**NO_MEMORY, "detach_feedback": True}),
    "quick, feedback noise": dict(kind="lab4", preset="quick", flags={**NO_MEMORY, "feedback_noise": 0.03}),
    "quick, long clip": dict(kind="lab4", preset="quick", flags={**NO_MEMORY, "long_clip": 32}),
    # the memory where frame 0 is worth more in training: a noisier fed-back frame, a longer self-fed clip
    "quick, memory, feedback noise": dict(kind="lab4", preset="quick",
                                          flags={**NO_MEMORY, "appearance_memory": True, "feedback_noise": 0.03}),
    "quick, memory, long clip": dict(kind="lab4", preset="quick",
                                     flags={**NO_MEMORY, "appearance_memory": True, "long_clip": 32}),
}
SHORT = {"reference": "reference", "template": "lab4 template flags", "pytorch-init": "lab4 template flags, PyTorch init",
         "unbounded": "lab4 template flags, unbounded", "no-ema": "lab4 template flags, raw weights",
         "quick": "quick", "no-memory": "quick, no memory", "memory": "quick, appearance memory", "follow": "quick, memory following the pose",
         "memory-10x": "quick, memory at 10x lr", "memory-body": "quick, memory with frame 0's body code",
         "follow-10x": "quick, memory following the pose at 10x lr",
         "memory-gap": "quick, memory from up to 300 frames back",
         "follow-gap": "quick, memory following the pose from up to 300 frames back",
         "detach": "quick, detached feedback",
         "noise": "quick, feedback noise", "long-clip": "quick, long clip",
         "memory-noise": "quick, memory, feedback noise", "memory-long-clip": "quick, memory, long clip"}
DEFAULT_RECIPES = "reference,template,no-ema,quick"
EVAL_AT = (10, 25, 50, 75, 100, 130, 160, 200, 250, 300, 400, 500)   # + the last step of every run


def ensure_data(quick: bool, held_out: str = "quality", log=print):
    from lab4.synth import generate_dataset
    path, seed, style = HELD_OUT[held_out]
    path = QUICK_DATA if quick else path
    if _complete(path):
        return path
    log(f"generating {path.relative_to(ROOT)} ({'mini' if quick else 'demo'} preset, seed {seed}, style {style}) ...")
    generate_dataset(path, "mini" if quick else "demo", seed=seed, workers=os.cpu_count(), progress=False, style=style)
    return path


def colour_bias(pred, val, length: int) -> list[float]:
    """Mean prediction - truth per channel over the scored frames 1..600 (Kaggle's): how far the
    rollout's colours sit from the video's, the error a studio-colour mistake makes (RESULTS 6f)."""
    import numpy as np
    n = min(length, 601)
    truth = val.images[1:n].astype(np.float32) / 255                      # (n-1, 3, H, W)
    guess = pred[1:n].float().cpu().numpy()
    return [round(float(v), 4) for v in (guess - truth).mean(axis=(0, 2, 3))]


class Curve:
    """Evaluates a model at the steps of EVAL_AT (and at the end) and keeps the training clock:
    wall time since start minus the time spent evaluating."""

    def __init__(self, val, train_labels, val_len: int, seed: int, log, eval_at=EVAL_AT, epoch_ends: bool = True):
        self.val, self.train_labels, self.val_len, self.seed, self.log = val, train_labels, val_len, seed, log
        self.eval_at, self.epoch_ends = eval_at, epoch_ends   # epoch_ends: also where train() validates
        self.model, self.per_frame = None, []                  # the last evaluation's weights and per-frame PSNR
        self.points, self.eval_s, self.t0 = [], 0.0, time.perf_counter()
        self.n_train = len(train_labels)

    def train_minutes(self) -> float:
        return (time.perf_counter() - self.t0 - self.eval_s) / 60

    def evaluate(self, model, step: int, name: str, minutes: float | None = None, epoch_end: bool = False) -> None:
        """train()'s validation at an epoch's end, at this step: BatchNorm statistics of the
        current weights, then the 630-frame rollout from frame 0 with z ~ N(0, I)."""
        from lab4.evaluate import drift, kaggle_mean, validate
        from lab4.weights import recalibrate_label_batchnorm
        minutes = self.train_minutes() if minutes is None else minutes
        t = time.perf_counter()
        state = {k: v.clone() for k, v in model.label_transformation.state_dict().items()}
        recalibrate_label_batchnorm(model, self.train_labels)
        pred, psnr = validate(model, self.val, self.val_len, seed=self.seed)
        bias = colour_bias(pred, self.val, self.val_len)
        model.label_transformation.load_state_dict(state)   # the run goes on exactly as without evaluation
        self.eval_s += time.perf_counter() - t
        self.points.append({"step": step, "minutes": minutes, "val_psnr": kaggle_mean(psnr), "epoch_end": epoch_end,
                            "colour_bias": bias, **drift(psnr)})
        p, self.per_frame = self.points[-1], [round(float(v), 3) for v in psnr]
        self.log(f"  {name}: step {step:>4}  {minutes:5.2f} min  val PSNR {p['val_psnr']:.2f} dB (1-150 {p['early']:.2f}, "
                 f"451-600 {p['late']:.2f}, drift {p['drift']:.2f})  mean pred-truth RGB {' '.join(f'{b:+.3f}' for b in bias)}")
        self.model = model


def run_reference(data, seed: int, budget_min: float, max_steps: int, curve: Curve, name: str) -> dict:
    """The template's loop (benchmarks/reference.py): PNG Dataset + DataLoader(batch 2, shuffle),
    unbounded output, Adam 1e-3, beta 1 (KL None), tfr 0, clip 1.0, until the wall-clock budget."""
    import torch
    from lab4.model import VideoCVAE
    from reference import TemplateDataset, template_train_step
    torch.manual_seed(seed)
    model = VideoCVAE(sigmoid_output=False).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(TemplateDataset(data, mode="train"), batch_size=2, shuffle=True,
                                         drop_last=True, num_workers=0,
                                         generator=torch.Generator().manual_seed(seed))
    curve.t0 = time.perf_counter()
    step = 0
    while step < max_steps and curve.train_minutes() < budget_min:
        for img, label in loader:
            model.train()
            template_train_step(model, opt, img, label, teacher_forcing=False, beta=1.0)
            step += 1
            if step in curve.eval_at:
                curve.evaluate(model, step, name)
            if step >= max_steps or curve.train_minutes() >= budget_min:
                break
    minutes = curve.train_minutes()
    if not curve.points or curve.points[-1]["step"] != step:
        curve.evaluate(model, step, name)
    return {"steps": step, "train_minutes": minutes}


def run_lab4(data, seed: int, spec: dict, curve: Curve, name: str, overrides: dict) -> dict:
    """lab4's train() as a user runs it (its own validations pushed to the end, where they cost the
    curve nothing); the curve's evaluations come from the on_step hook and evaluate the weights
    train() validates (the moving average with --ema, else the raw weights)."""
    from lab4.config import make_config
    from lab4.train import Run
    with tempfile.TemporaryDirectory() as out:
        cfg = make_config(spec["preset"], **{**spec["flags"], **overrides}, DR=str(data), save_root=out,
                          device="cpu", seed=seed, num_workers=2, val_every=10 ** 6)
        last = {}
        per_epoch = int(curve.n_train * cfg.partial) // cfg.train_vi_len // cfg.batch_size   # train()'s count
        if cfg.steps_per_epoch:
            per_epoch = min(per_epoch, cfg.steps_per_epoch)

        def on_step(epoch, k, loss, model):
            last["step"] = last.get("step", 0) + 1
            last["model"] = run.inference_model
            epoch_end = k == per_epoch - 1            # where train() validates (val_every 1): the user's view
            if last["step"] in curve.eval_at or (epoch_end and curve.epoch_ends):
                curve.evaluate(run.inference_model, last["step"], name, epoch_end=epoch_end)
            last["minutes"] = curve.train_minutes()

        curve.t0 = time.perf_counter()
        run = Run(cfg, progress=False, on_step=on_step, log=lambda s: None)
        res = run.fit()
        if not curve.points or curve.points[-1]["step"] != last["step"]:
            curve.evaluate(last["model"], last["step"], name, minutes=last["minutes"], epoch_end=True)  # train()'s own end
                                                                                        # (validation, saving) excluded
        memory = last["model"].appearance_memory
        return {"steps": last["step"], "train_minutes": last["minutes"], "config": cfg.to_dict(),
                "train_val_psnr": float(res["best_val_psnr"]),
                "memory_share": None if memory is None else round(memory.frame0_share(), 4)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap)
    ap.add_argument("--recipes", default=DEFAULT_RECIPES, help=f"comma-separated, from {','.join(SHORT)}")
    ap.add_argument("--seeds", default="1", help="comma-separated training seeds (default 1)")
    ap.add_argument("--eval-at", metavar="STEPS", help="comma-separated steps where the curve is evaluated (each "
                    "630-frame rollout costs ~45 s at full dims on 2 cores; default: %s); '' evaluates lab4 recipes at epoch ends "
                    "only" % ",".join(map(str, EVAL_AT)))
    ap.add_argument("--budget-min", type=float, default=13.0, help="the reference's wall-clock budget (minutes)")
    ap.add_argument("--data", help="dataset folder (default: --held-out's, generated on first use)")
    ap.add_argument("--held-out", default="quality", choices=sorted(HELD_OUT),
                    help="which held-out synthetic set (default quality: synth seed 7; travel: seed 11, travel style; "
                         "stripes: seed 13, striped shirts)")
    ap.add_argument("--average", default="", metavar="K,K,...",
                    help="after the first seed's run of each recipe in --average-recipes, the val video's mean of K "
                         "rollouts for each K (lab4-test --average K): PSNR, SSIM, drift and seconds; e.g. 1,4,16")
    ap.add_argument("--average-recipes", default="quick", help="comma-separated recipes --average measures (default quick)")
    ap.add_argument("--final-only", action="store_true", help="evaluate lab4 recipes only at --eval-at steps and at "
                    "the end, not at every epoch end (the minutes of the curve are the same; the run is shorter)")
    ap.add_argument("--figure", default=str(ROOT / "reports" / "figures" / "quality_psnr_vs_minutes.png"))
    ap.add_argument("--per-frame-figure", metavar="PNG", help="also draw each recipe's per-frame val PSNR at the end "
                    "of its runs (mean over seeds) against the frame index")
    ap.add_argument("--set", default="", metavar="KEY=VALUE,...",
                    help="config overrides for every lab4 recipe (exploring a recipe), e.g. cpu_amp=true,lr=5e-4")
    a = ap.parse_args(argv)
    apply_threads(a.threads)
    quiet_progress()
    log = lambda s: print(s, flush=True)   # noqa: E731
    names = [SHORT.get(r.strip(), r.strip()) for r in a.recipes.split(",")]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        ap.error(f"--recipes: unknown {unknown}; choose from {','.join(SHORT)}")
    seeds = [int(s) for s in a.seeds.split(",")]
    eval_at = EVAL_AT if a.eval_at is None else tuple(int(s) for s in a.eval_at.split(",") if s.strip())
    import torch
    from lab4.data import load_split
    from lab4.evaluate import copy_first_psnr, kaggle_mean
    data = ROOT / a.data if a.data else ensure_data(a.quick, a.held_out, log)
    averages = [int(k) for k in a.average.split(",") if k.strip()]
    average_recipes = {SHORT.get(r.strip(), r.strip()) for r in a.average_recipes.split(",")}
    val = load_split(data, "val", 32, 64, None, 2)
    train_split = load_split(data, "train", 32, 64, None, 2)   # warm the cache: not in anyone's minutes
    val_len = 120 if a.quick else 630
    copy_first = kaggle_mean(copy_first_psnr(val, val_len))
    overrides = dict(F_dim=16, L_dim=8, N_dim=4, D_out_dim=24, steps_per_epoch=6) if a.quick else {}
    try:
        overrides.update(parse_set(a.set))
    except ValueError as e:
        ap.error(str(e))
    log(f"== quality benchmark: {data.relative_to(ROOT)} ({len(train_split.images)} train frames), "
        f"copy-first {copy_first:.2f} dB, {now()}, load {load_avg()} ==")
    runs = []
    for name in names:
        for seed in seeds:
            curve = Curve(val, torch.from_numpy(train_split.labels), val_len, seed, log, eval_at, not a.final_only)
            spec = RECIPES[name]
            if spec["kind"] == "reference":
                budget = 0.3 if a.quick else a.budget_min
                info = run_reference(data, seed, budget, 20 if a.quick else 10 ** 6, curve, name)
            else:
                info = run_lab4(data, seed, spec, curve, name, overrides)
                if averages and seed == seeds[0] and name in average_recipes:
                    info["average"] = measure_average(curve, averages, name, log)
            runs.append({"recipe": name, "seed": seed, **info, "curve": curve.points,
                         "final_val_psnr": curve.points[-1]["val_psnr"], "final_per_frame": curve.per_frame})
            log(f"  {name} seed {seed}: {info['steps']} steps in {info['train_minutes']:.2f} min, "
                f"val PSNR {curve.points[-1]['val_psnr']:.2f} dB ({curve.points[-1]['val_psnr'] - copy_first:+.2f} "
                f"vs copy-first)" + ("" if info.get("memory_share") is None else
                                      f", frame 0's share of the memory's weights {info['memory_share']:.3f}"))
    info = json.loads((data / "synth.json").read_text()) if (data / "synth.json").is_file() else {}
    res = {"date": now(), "machine": machine_info(), "data": str(data.relative_to(ROOT)), "data_seed": info.get("seed"),
           "data_style": info.get("style", "demo"), "average": averages,
           "n_train": int(len(train_split.images)), "val_len": val_len, "copy_first_psnr": copy_first,
           "seeds": seeds, "set": a.set, "eval_at": list(eval_at), "budget_min": a.budget_min, "quick": a.quick, "runs": runs, "load_avg_after": load_avg()}
    res["criteria"] = criteria(res)
    for c in res["criteria"]:
        log(f"  {c['what']}: {c['value']} -> {'met' if c['met'] else 'NOT met'}")
    if a.figure and not a.quick:
        plot_curves(res, a.figure)
        log(f"wrote {a.figure}")
    if a.per_frame_figure and not a.quick:
        plot_per_frame(res, a.per_frame_figure)
        log(f"wrote {a.per_frame_figure}")
    if a.json:
        write_json(a.json, res)
    return 0


def measure_average(curve: Curve, ks: list[int], name: str, log) -> list[dict]:
    """The val video's per-pixel mean of K rollouts (`lab4-test --val --average K`) of the run's last
    evaluated weights, for each K (K = 1: the plain rollout): PSNR, SSIM, drift and seconds."""
    from lab4.evaluate import drift, kaggle_mean, pixel_mean, validate_samples
    from lab4.score import ssim_per_frame
    from lab4.weights import recalibrate_label_batchnorm
    recalibrate_label_batchnorm(curve.model, curve.train_labels)       # as Curve.evaluate does
    gt, rows = curve.val.images[:curve.val_len], []
    for k in ks:
        t = time.perf_counter()
        preds, _ = validate_samples(curve.model, curve.val, curve.val_len, [curve.seed + i for i in range(k)])
        mean, psnr = pixel_mean(preds, curve.val)                          # (T, 3, H, W), (T,)
        seconds = time.perf_counter() - t
        rows.append({"K": k, "val_psnr": kaggle_mean(psnr), "val_ssim": kaggle_mean(ssim_per_frame(mean, gt)),
                     **drift(psnr), "seconds": seconds})
        log(f"  {name}: mean of {k:>2} rollouts  val PSNR {rows[-1]['val_psnr']:.3f} dB  SSIM {rows[-1]['val_ssim']:.4f}"
            f"  drift {rows[-1]['drift']:.2f}  {seconds:.0f} s")
    return rows


def parse_set(text: str) -> dict:
    """`--set lr=5e-4,cpu_amp=true` -> {"lr": 5e-4, "cpu_amp": True}, typed like TrainConfig's fields."""
    import dataclasses
    from lab4.config import TrainConfig
    types = {f.name: type(f.default) for f in dataclasses.fields(TrainConfig)}
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in types:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE with KEY a TrainConfig field")
        kind = types[key]
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"--set {item!r}: expected true or false")
            out[key] = value.lower() in ("true", "1")
        else:
            out[key] = value if kind in (str, type(None)) else kind(value)
    return out


def psnr_at(run: dict, minutes: float) -> float:
    """The run's val PSNR at the last evaluation made by `minutes` of training (nan: none yet)."""
    pts = [p["val_psnr"] for p in run["curve"] if p["minutes"] <= minutes + 1e-9]
    return pts[-1] if pts else float("nan")


def criteria(res: dict) -> list[dict]:
    """The issue's acceptance figures, from the runs (means over seeds)."""
    cf, out = res["copy_first_psnr"], []
    by = {}
    for r in res["runs"]:
        by.setdefault(r["recipe"], []).append(r)
    mean = lambda xs: sum(xs) / len(xs)   # noqa: E731
    t = by.get("lab4 template flags")
    if t:
        gain = mean([r["final_val_psnr"] for r in t]) - cf
        worst = min(p["val_psnr"] for r in t for p in r["curve"] if p.get("epoch_end", True)) - cf
        out.append({"what": "template flags: final val PSNR - copy-first (>= +3 dB)", "value": f"{gain:+.2f} dB",
                    "met": gain >= 3})
        out.append({"what": "template flags: lowest epoch-end validation - copy-first (>= 0)",
                    "value": f"{worst:+.2f} dB", "met": worst >= 0})
    q, ref = by.get("quick"), by.get("reference")
    if q:
        minutes = max(r["train_minutes"] for r in q)
        gain = mean([r["final_val_psnr"] for r in q]) - cf
        out.append({"what": "quick: training minutes (<= 13)", "value": f"{minutes:.2f}", "met": minutes <= 13})
        out.append({"what": "quick: final val PSNR - copy-first (>= +6 dB)", "value": f"{gain:+.2f} dB", "met": gain >= 6})
        if ref:
            diffs = [qr["final_val_psnr"] - psnr_at(rr, qr["train_minutes"]) for qr in q for rr in ref
                     if qr["seed"] == rr["seed"]]
            d = mean(diffs) if diffs else float("nan")
            out.append({"what": "quick - reference at equal wall-clock (>= +2 dB)", "value": f"{d:+.2f} dB",
                        "met": bool(d >= 2)})
    return out


def plot_curves(res: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from lab4.plots import save_figure
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    colors = {}
    for r in res["runs"]:
        c = colors.setdefault(r["recipe"], f"C{len(colors)}")
        label = r["recipe"] if r["seed"] == res["seeds"][0] else None
        for ax, key in zip(axes, ("minutes", "step")):
            ax.plot([p[key] for p in r["curve"]], [p["val_psnr"] for p in r["curve"]], "o-", ms=3, color=c,
                    label=label, alpha=0.9)
    for ax, xlabel in zip(axes, ("training wall-clock (min, 2-core CPU, evaluation excluded)", "optimizer steps")):
        ax.axhline(res["copy_first_psnr"], color="k", ls="--", lw=1, label="copy first frame")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("val PSNR, dB (630-frame rollout, z ~ N(0, I))")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Learning curves at full model dims on {res['data']} (held-out seed {res['data_seed']}), "
                 f"training seeds {','.join(map(str, res['seeds']))}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, os.path.dirname(path), os.path.basename(path), dpi=110)
    plt.close(fig)


def plot_per_frame(results, path) -> None:
    """Each recipe's final per-frame val PSNR, averaged over its seeds and smoothed over 15 frames,
    against the frame index, with the mean of frames 1-150 and 451-600 (the drift) in the legend.
    `results`: one bench result, or a list of them (one panel each, e.g. one per held-out set)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from lab4.plots import save_figure
    results = [results] if isinstance(results, dict) else list(results)
    fig, axes = plt.subplots(len(results), 1, figsize=(10, 4.2 * len(results)), squeeze=False)
    for ax, res in zip(axes[:, 0], results):
        _per_frame_panel(ax, res)
    fig.tight_layout()
    save_figure(fig, os.path.dirname(path), os.path.basename(path), dpi=110)
    plt.close(fig)


def _per_frame_panel(ax, res: dict) -> None:
    import numpy as np
    import pandas as pd
    from lab4.evaluate import drift
    for i, recipe in enumerate(dict.fromkeys(r["recipe"] for r in res["runs"])):
        curves = np.array([r["final_per_frame"] for r in res["runs"] if r["recipe"] == recipe])   # (seeds, T)
        mean = curves.mean(0)
        d = np.mean([[drift(c)[k] for k in ("early", "late", "drift")] for c in curves], axis=0)
        smooth = pd.Series(mean[1:]).rolling(15, center=True, min_periods=1).mean()
        ax.plot(np.arange(1, len(mean)), smooth, color=f"C{i}", lw=1.3,
                label=f"{recipe}: 1-150 {d[0]:.2f}, 451-600 {d[1]:.2f} dB, drift {d[2]:.2f} ({len(curves)} seed{'s' if len(curves) > 1 else ''})")
    ax.axhline(res["copy_first_psnr"], color="k", ls="--", lw=1, label="copy first frame (mean)")
    ax.axvline(600.5, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="frame (1..600 scored)", ylabel="val PSNR, dB (15-frame mean)",
           title=f"Per-frame PSNR of the 630-frame rollout on {res['data']} (held out), end of training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")


if __name__ == "__main__":
    sys.exit(main())
