"""Training-step benchmark: full model dims (F128/L32/N12/D192), B=2, T=16, fp32, on the CPU.

    python benchmarks/bench_train.py [--quick] [--repeats 3] [--no-options] [--with-compile] [--json F]

Reference: the template's training_one_step (benchmarks/reference.py): per-time-step loop, the
current and the previous frame encoded by separate calls, then loss, backward, clip, Adam step.
Ours: the model as lab4.train builds it with default flags (VideoCVAE, time_chunk 8 on a CPU,
channels_last) + VideoCVAE.forward (batched per 8-step time chunk) + cvae_loss + the same backward,
clip and Adam step. The reference model is the template's (NCHW). Both with teacher forcing on and off. Reported: frames/s (B x T sequence frames
per second), the step's FLOPs (torch.utils.flop_counter.FlopCounterMode, counted on the warm-up
step) and achieved GFLOP/s next to the machine's fp32 matmul GFLOP/s (median torch.mm 2048^2).
Then cheap options on ours (teacher forcing on): without channels_last, other time chunks, mkldnn
off, thread counts, bf16 autocast, mkldnn implicit-bf16 convolutions, torch.compile (with
--with-compile), and a torch.profiler table of the top operators by self CPU time.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # keep torch.profiler quiet

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import apply_threads, PeakRSS, add_common_args, median, ratio, stamp, write_json, BENCH512, BENCH_QUICK  # noqa: E402
from reference import template_train_step  # noqa: E402

from lab4.memory import keep_freed_memory  # noqa: E402
from lab4.device import autocast
from lab4.model import VideoCVAE, cvae_loss  # noqa: E402

FULL_DIMS = dict(F_dim=128, L_dim=32, N_dim=12, D_out_dim=192)
QUICK_DIMS = dict(F_dim=32, L_dim=16, N_dim=4, D_out_dim=48)
TARGET_RATIO, TARGET_CEILING = 1.3, 0.75


# ---- inputs and steps ----------------------------------------------------------------------
def inputs(B: int, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """B training sequences of T frames: real frames of the benchmark dataset when it exists
    (decoded directly from its PNGs), else uniform noise. (B, T, 3, 32, 64) each."""
    from lab4.data import list_frames, label_path, load_frame
    for root in (BENCH512, BENCH_QUICK):
        folder = root / "train" / "train_img"
        if folder.is_dir():
            paths = list_frames(folder)[:B * T]
            if len(paths) == B * T:
                x = torch.stack([torch.from_numpy(load_frame(p)) for p in paths]).float() / 255
                p = torch.stack([torch.from_numpy(load_frame(label_path(q))) for q in paths]).float() / 255
                return x.view(B, T, 3, 32, 64), p.view(B, T, 3, 32, 64)
    g = torch.Generator().manual_seed(0)
    return torch.rand(B, T, 3, 32, 64, generator=g), torch.rand(B, T, 3, 32, 64, generator=g)


def new_model(dims: dict, channels_last: bool = False, time_chunk: int | None = None):
    """A fresh model (seed 0) and Adam. Defaults = the template's model: NCHW."""
    torch.manual_seed(0)
    model = VideoCVAE(**dims).train()
    if time_chunk is not None:
        model.time_chunk = time_chunk
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def package_settings(device: str = "cpu") -> dict:
    """What lab4.train does with default flags: TrainConfig.channels_last and time_chunk."""
    from lab4.config import TrainConfig
    cfg = TrainConfig()
    chunk = getattr(cfg, "time_chunk", -1)
    return {"channels_last": bool(getattr(cfg, "channels_last", False)),
            "time_chunk": chunk if chunk >= 0 else (8 if device == "cpu" else 0)}


def ours_model(dims: dict, **override):
    return new_model(dims, **{**package_settings(), **override})


def ours_step(model, opt, x, p, tf: bool, autocast=None, scaler=None) -> float:
    """What lab4.train does per step (forward under autocast when asked, loss in fp32; with an fp16
    autocast, a GradScaler scales the loss and unscales the gradients before the clip)."""
    with autocast if autocast is not None else contextlib.nullcontext():
        x_hat, mu, logvar = model(x, p, tf)
    loss, _, _ = cvae_loss(x_hat, x[:, 1:], mu, logvar, beta=1.0)
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    else:
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
    return loss.item()


def ref_step(model, opt, x, p, tf: bool) -> float:
    return template_train_step(model, opt, x, p, tf, beta=1.0)


def count_flops(step) -> tuple[float, float]:
    """Run `step` once under FlopCounterMode: (FLOPs, seconds). Doubles as the warm-up."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc:
        t0 = time.perf_counter()
        step()
        dt = time.perf_counter() - t0
    return float(fc.get_total_flops()), dt


def timed(step, repeats: int) -> tuple[list[float], float]:
    times, peak = [], 0.0
    for _ in range(repeats):
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        peak = max(peak, mem.mib)
    return times, peak


def matmul_gflops(n: int = 2048, repeats: int = 10) -> dict:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        torch.mm(a, b)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        ts.append(time.perf_counter() - t0)
    return {"n": n, "threads": torch.get_num_threads(), "median_s": median(ts),
            "gflops": 2 * n ** 3 / median(ts) / 1e9, "best_gflops": 2 * n ** 3 / min(ts) / 1e9}


# ---- the comparison -------------------------------------------------------------------------
def compare(dims, x, p, tf: bool, repeats: int, log=print) -> dict:
    """Reference, ours and ours with the opt-in --cpu_amp (bf16 autocast), in alternating blocks:
    two rounds of [a warm-up step, then `repeats` timed steps] per participant, so load drift hits
    all three alike while each is timed in its own steady state. The process runs with
    lab4.memory.keep_freed_memory() set, as a `lab4-train` process does, so the reference gets it
    too (it helps the reference less; the ratio is conservative)."""
    B, T = x.shape[:2]
    rm, ro = new_model(dims)
    om, oo = ours_model(dims)
    am, ao = ours_model(dims)
    amp = autocast(torch.device("cpu"), "bf16")
    steps = {"reference": lambda: ref_step(rm, ro, x, p, tf),
             "ours": lambda: ours_step(om, oo, x, p, tf),
             "ours_cpu_amp": lambda: ours_step(am, ao, x, p, tf, amp)}
    res = {}
    for name, step in steps.items():
        flops, warm = count_flops(step)
        res[name] = {"flops": flops, "warmup_s": warm, "times": []}
    peaks = dict.fromkeys(steps, 0.0)
    for _ in range(2):
        for name, step in steps.items():
            step()                                      # warm-up after the switch: not timed
            ts, pk = timed(step, repeats)
            res[name]["times"] += ts
            peaks[name] = max(peaks[name], pk)
    for name, r in res.items():
        t = median(r["times"])
        r.update(step_s=t, frames_per_s=B * T / t, gflops=r["flops"] / t / 1e9, peak_rss_mib=peaks[name])
    res["ratio"] = ratio(res["ours"]["frames_per_s"], res["reference"]["frames_per_s"])
    res["ratio_cpu_amp"] = ratio(res["ours_cpu_amp"]["frames_per_s"], res["reference"]["frames_per_s"])
    log(f"[train] teacher forcing {'on ' if tf else 'off'}: reference {res['reference']['step_s']:.2f} s/step "
        f"({res['reference']['frames_per_s']:.2f} frames/s, {res['reference']['flops'] / 1e9:.0f} GFLOP, "
        f"{res['reference']['gflops']:.1f} GFLOP/s) | ours {res['ours']['step_s']:.2f} s/step "
        f"({res['ours']['frames_per_s']:.2f} frames/s, {res['ours']['flops'] / 1e9:.0f} GFLOP, "
        f"{res['ours']['gflops']:.1f} GFLOP/s) | RATIO {res['ratio']:.2f}x | opt-in --cpu_amp (bf16) "
        f"{res['ours_cpu_amp']['step_s']:.2f} s/step, {res['ratio_cpu_amp']:.2f}x", flush=True)
    return res


# ---- options --------------------------------------------------------------------------------
def option_specs(with_compile: bool, nproc: int):
    """(name, description, changes numerics?, settings). Baseline = the package's defaults."""
    ps = package_settings()
    specs = [
        ("baseline", f"the package's defaults: time_chunk {ps['time_chunk']}, channels_last {ps['channels_last']}, "
                     f"fp32, mkldnn on, {nproc} threads", False, {}),
        ("nchw", "channels_last off (the template's NCHW)", False, {"channels_last": False}),
        ("time_chunk_all", "time_chunk 0: all 15 time steps in one batched call", False, {"time_chunk": 0}),
        ("time_chunk_4", "time_chunk 4", False, {"time_chunk": 4}),
        ("mkldnn_off", "torch.backends.mkldnn.flags(enabled=False)", False, {"mkldnn": False}),
        ("threads_1", "torch.set_num_threads(1)", False, {"threads": 1}),
    ]
    if nproc > 2:
        specs.append((f"threads_{nproc // 2}", f"torch.set_num_threads({nproc // 2})", False, {"threads": nproc // 2}))
    specs += [
        ("bf16_autocast", "`lab4-train --cpu_amp`: bf16 autocast around the forward", True, {"bf16": True}),
        ("mkldnn_conv_bf16", "torch.backends.mkldnn.conv.fp32_precision = 'bf16' (implicit bf16 convolutions)",
         True, {"conv_bf16": True}),
    ]
    if with_compile:
        specs.append(("compile", "torch.compile(model) (inductor, CPU)", False, {"compile": True}))
    return specs


def channels_last_inputs(x: torch.Tensor) -> torch.Tensor:
    """(B, T, 3, H, W) whose frames are channels_last (what model.encode_frames reshapes to)."""
    return x.reshape(-1, *x.shape[-3:]).contiguous(memory_format=torch.channels_last).view(x.shape)


def run_option(dims, x, p, kw: dict, repeats: int) -> dict:
    threads0 = torch.get_num_threads()
    prec0 = torch.backends.mkldnn.conv.fp32_precision
    model, opt = ours_model(dims, **{k: kw[k] for k in ("channels_last", "time_chunk") if k in kw})
    autocast = autocast(torch.device("cpu"), "bf16") if kw.get("bf16") else None
    fwd = torch.compile(model) if kw.get("compile") else model
    ctx = torch.backends.mkldnn.flags(enabled=False) if kw.get("mkldnn") is False else contextlib.nullcontext()
    try:
        if "threads" in kw:
            torch.set_num_threads(kw["threads"])
        if kw.get("conv_bf16"):
            torch.backends.mkldnn.conv.fp32_precision = "bf16"
        with ctx:
            step = lambda: ours_step(fwd, opt, x, p, True, autocast)
            t0 = time.perf_counter()
            loss0 = step()
            warm = time.perf_counter() - t0
            times, peak = timed(step, repeats)
    except Exception as e:  # noqa: BLE001  (an option that fails here is reported, not fatal)
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    finally:
        torch.set_num_threads(threads0)
        torch.backends.mkldnn.conv.fp32_precision = prec0
    return {"step_s": median(times), "times": times, "warmup_s": warm, "first_loss": loss0, "peak_rss_mib": peak}


def run_options(dims, x, p, repeats: int, with_compile: bool, flops: float, log=print) -> list[dict]:
    out, base = [], None
    for name, desc, numerics, kw in option_specs(with_compile, os.cpu_count() or 1):
        r = run_option(dims, x, p, kw, repeats)
        r.update(name=name, description=desc, changes_numerics=numerics)
        if "error" in r:
            log(f"[train] option {name}: failed ({r['error']})", flush=True)
        else:
            base = base or r["step_s"]
            r["speedup_vs_baseline"] = base / r["step_s"]
            r["gflops"] = flops / r["step_s"] / 1e9
            extra = f", warm-up/compile {r['warmup_s']:.0f} s" if name == "compile" else ""
            log(f"[train] option {name:<28} {r['step_s']:.2f} s/step  x{r['speedup_vs_baseline']:.2f} vs baseline"
                f"{' (changes numerics)' if numerics else ''}{extra}", flush=True)
        out.append(r)
    return out


# ---- kept memory -----------------------------------------------------------------------------
def memory_probe(mode: str, dims, steps: int = 4) -> dict:
    """In this (fresh) process: keep_freed_memory() when mode == "keep", then ours for 2 warm-up and
    `steps` timed steps; s/step and minor page faults per step."""
    import resource
    if mode == "keep":
        keep_freed_memory()
    x, p = inputs(2, 16 if dims == FULL_DIMS else 4)
    model, opt = ours_model(dims)
    for _ in range(2):
        ours_step(model, opt, x, p, True)
    times, faults = [], []
    for _ in range(steps):
        f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        ours_step(model, opt, x, p, True)
        times.append(time.perf_counter() - t0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    return {"step_s": median(times), "times": times, "faults_per_step": median(faults)}


def memory_effect(quick: bool, threads, log=print) -> dict:
    """Ours in fresh processes (the setting is process-wide): glibc's defaults vs
    lab4.memory.keep_freed_memory() as `lab4-train` sets it; twice each, alternating."""
    import json
    import subprocess
    runs = {"glibc_defaults": [], "kept": []}
    for _ in range(2):
        for name, mode in (("glibc_defaults", "default"), ("kept", "keep")):
            cmd = [sys.executable, os.path.abspath(__file__), "--memory-probe", mode] + (["--quick"] if quick else [])
            if threads:
                cmd += ["--threads", str(threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            runs[name].append(json.loads(out.strip().splitlines()[-1]))
    res = {name: {"step_s": median([t for r in rs for t in r["times"]]), "times": [t for r in rs for t in r["times"]],
                  "faults_per_step": median([r["faults_per_step"] for r in rs])} for name, rs in runs.items()}
    res["speedup"] = res["glibc_defaults"]["step_s"] / res["kept"]["step_s"]
    log(f"[train] fresh processes: glibc defaults {res['glibc_defaults']['step_s']:.2f} s/step "
        f"({res['glibc_defaults']['faults_per_step']:,.0f} page faults per step) | keep_freed_memory "
        f"{res['kept']['step_s']:.2f} s/step ({res['kept']['faults_per_step']:,.0f}) | x{res['speedup']:.2f}", flush=True)
    return res


# ---- profile -------------------------------------------------------------------------------
CATEGORIES = [  # (category, substrings of aten op names); first match wins
    ("convolution (bwd)", ("convolution_backward", "convolutionbackward")),
    ("convolution (fwd)", ("mkldnn_convolution", "_convolution", "aten::convolution", "conv2d", "thnn_conv", "_slow_conv")),
    ("optimizer (Adam, clip)", ("_foreach", "adam", "norm", "clamp", "_fused", "sqrt", "lerp", "addcdiv", "addcmul")),
    ("elementwise", ("leaky_relu", "mul", "add", "sub", "div", "exp", "sigmoid", "pow", "where", "fill", "zero",
                     "mse_loss", "sum", "mean", "neg", "batch_norm", "native_batch_norm", "var", "rsub", "threshold")),
    ("memory (copy, cat, pad)", ("copy", "cat", "clone", "contiguous", "reflection_pad", "empty", "stack", "as_strided",
                                 "split", "chunk", "slice", "view", "reshape", "select", "narrow", "unsafe", "to", "repeat")),
]


def categorize(name: str) -> str:
    n = name.lower()
    for cat, keys in CATEGORIES:
        if any(k in n for k in keys):
            return cat
    return "other"


def profile_step(dims, x, p, tf: bool = True, top: int = 15) -> dict:
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode
    model, opt = ours_model(dims)
    ours_step(model, opt, x, p, tf)                                   # warm-up
    with FlopCounterMode(display=False) as fc:
        ours_step(model, opt, x, p, tf)
    counts = {str(k): v for k, v in fc.get_flop_counts().get("Global", {}).items()}
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        ours_step(model, opt, x, p, tf)
        wall = time.perf_counter() - t0
    # self times of leaf ops only (skip autograd wrappers, whose self time is their overhead)
    ev = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in ev)
    ev.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    rows = [{"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1e3, "pct": 100 * e.self_cpu_time_total / total,
             "calls": e.count, "category": categorize(e.key)} for e in ev[:top]]
    cats: dict[str, float] = {}
    for e in ev:
        c = categorize(e.key)
        cats[c] = cats.get(c, 0.0) + e.self_cpu_time_total / 1e3
    conv_fwd_flops = sum(v for k, v in counts.items() if k.endswith("convolution"))
    conv_bwd_flops = sum(v for k, v in counts.items() if "backward" in k)
    res = {"teacher_forcing": tf, "wall_s": wall, "total_self_cpu_ms": total / 1e3, "top": rows,
           "categories_ms": dict(sorted(cats.items(), key=lambda kv: -kv[1])),
           "flops_by_op": counts, "conv_fwd_flops": conv_fwd_flops, "conv_bwd_flops": conv_bwd_flops}
    fwd_ms, bwd_ms = cats.get("convolution (fwd)", 0.0), cats.get("convolution (bwd)", 0.0)
    res["conv_fwd_gflops"] = conv_fwd_flops / (fwd_ms / 1e3) / 1e9 if fwd_ms else float("nan")
    res["conv_bwd_gflops"] = conv_bwd_flops / (bwd_ms / 1e3) / 1e9 if bwd_ms else float("nan")
    ps = package_settings()
    n = ps["time_chunk"] or (x.shape[1] - 1)
    res["layer_batch"], res["layer_channels_last"] = x.shape[0] * n, ps["channels_last"]
    res["layer_shapes"] = conv_layer_table(dims, x.shape[0] * n, ps["channels_last"])
    return res


def conv_layer_table(dims, batch: int, channels_last: bool = False, repeats: int = 3) -> list[dict]:
    """Forward GFLOP/s of the model's convolution kinds at the batch one training call sees
    (B x time_chunk frames), in the package's memory format: why the step is below the ceiling."""
    import torch.nn as nn
    kinds = [("3x3 conv 172->43 (Decoder_Fusion RB)", nn.Conv2d(172, 43, 3, padding=1)),
             ("3x3 conv 86->86 (Decoder_Fusion RB)", nn.Conv2d(86, 86, 3, padding=1)),
             ("1x1 conv 172->688 (ConvFFN)", nn.Conv2d(172, 688, 1)),
             ("1x1 conv 24->96 (ConvFFN, Generator tail)", nn.Conv2d(24, 96, 1)),
             ("depthwise 3x3, 172 ch", nn.Conv2d(172, 172, 3, padding=1, groups=172)),
             ("3x3 conv 3->16 (RGB_Encoder head)", nn.Conv2d(3, 16, 3, padding=1))]
    if dims != FULL_DIMS:
        kinds = kinds[2:3]
    out = []
    with torch.no_grad():
        for name, conv in kinds:
            xin = torch.randn(batch, conv.in_channels, 32, 64)
            if channels_last:
                conv, xin = conv.to(memory_format=torch.channels_last), xin.contiguous(memory_format=torch.channels_last)
            fl = 2 * batch * 32 * 64 * conv.out_channels * (conv.in_channels // conv.groups) * conv.kernel_size[0] ** 2
            ts = []
            conv(xin)
            for _ in range(repeats):
                t0 = time.perf_counter()
                conv(xin)
                ts.append(time.perf_counter() - t0)
            out.append({"layer": name, "gflop": fl / 1e9, "gflops": fl / median(ts) / 1e9})
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap)
    ap.add_argument("--repeats", type=int, default=2, help="timed steps per block (2 blocks per configuration, "
                    "each after 1 warm-up step)")
    ap.add_argument("--opt-repeats", type=int, default=2, help="timed steps per option (after 1 warm-up)")
    ap.add_argument("--no-options", action="store_true", help="skip the options sweep")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--with-compile", action="store_true", help="also try torch.compile (minutes of compiling)")
    ap.add_argument("--memory-probe", choices=["keep", "default"], help=argparse.SUPPRESS)   # memory_effect's child
    a = ap.parse_args(argv)
    apply_threads(a.threads)
    dims = QUICK_DIMS if a.quick else FULL_DIMS
    if a.memory_probe:
        import json
        print(json.dumps(memory_probe(a.memory_probe, dims)))
        return {}
    keep_freed_memory()     # as a `lab4-train` process; the reference shares the process and the setting
    B, T = 2, (4 if a.quick else 16)
    x, p = inputs(B, T)
    n_mm = 1024 if a.quick else 2048
    mm_start = matmul_gflops(n_mm, 20)
    print(f"[train] dims {dims}, B={B}, T={T}, fp32, {torch.get_num_threads()} threads; torch.mm {n_mm}^2: "
          f"{mm_start['gflops']:.0f} GFLOP/s (median of 20; measured again at the end)", flush=True)
    res = {"section": "train", **stamp(), "quick": a.quick, "dims": dims, "B": B, "T": T,
           "threads": torch.get_num_threads(), "package_settings": package_settings(),
           "targets": {"ratio": TARGET_RATIO, "ceiling_fraction": TARGET_CEILING}}
    for tf in (True, False):
        res["tf_on" if tf else "tf_off"] = compare(dims, x, p, tf, a.repeats)
    if not a.no_profile:
        prof = profile_step(dims, x, p)
        res["profile"] = prof
        print("[train] profile of ours (teacher forcing on), self CPU time by category: "
              + ", ".join(f"{k} {v:.0f} ms" for k, v in prof["categories_ms"].items()), flush=True)
        print(f"[train]   convolutions alone: forward {prof['conv_fwd_gflops']:.0f} GFLOP/s, backward "
              f"{prof['conv_bwd_gflops']:.0f} GFLOP/s; per layer kind (forward, batch {prof['layer_batch']}): "
              + "; ".join(f"{r['layer']} {r['gflops']:.0f}" for r in prof["layer_shapes"]), flush=True)
    if not a.no_options:
        res["memory"] = memory_effect(a.quick, a.threads)
        res["options"] = run_options(dims, x, p, a.opt_repeats, a.with_compile, res["tf_on"]["ours"]["flops"])
    # The ceiling is what the machine can do: of the two medians (start, end) the higher one (a
    # shared machine's load only ever lowers it); both are recorded.
    mm_end = matmul_gflops(n_mm, 20)
    mm = dict(max(mm_start, mm_end, key=lambda m: m["gflops"]))
    mm.update(gflops_start=mm_start["gflops"], gflops_end=mm_end["gflops"])
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    res["matmul_1thread"] = matmul_gflops(n_mm, 5) if n > 1 else None
    torch.set_num_threads(n)
    res["matmul"] = mm
    print(f"[train] matmul ceiling {mm['gflops']:.0f} GFLOP/s (medians {mm_start['gflops']:.0f} at the start, "
          f"{mm_end['gflops']:.0f} at the end)", flush=True)
    for key in ("tf_on", "tf_off"):
        r = res[key]
        r["ours"]["ceiling_fraction"] = r["ours"]["gflops"] / mm["gflops"]
        r["reference"]["ceiling_fraction"] = r["reference"]["gflops"] / mm["gflops"]
        r["ours_cpu_amp"]["ceiling_fraction"] = None    # bf16: not comparable with the fp32 matmul ceiling
        r["met_ratio"] = bool(r["ratio"] >= TARGET_RATIO)
        r["met_ceiling"] = bool(r["ours"]["ceiling_fraction"] >= TARGET_CEILING)
        print(f"[train] teacher forcing {'on ' if key == 'tf_on' else 'off'}: RATIO {r['ratio']:.2f}x (target >= "
              f"{TARGET_RATIO}x: {'met' if r['met_ratio'] else 'NOT met'}); ours at "
              f"{100 * r['ours']['ceiling_fraction']:.0f}% of the matmul ceiling (target {100 * TARGET_CEILING:.0f}%: "
              f"{'met' if r['met_ceiling'] else 'NOT met'}), reference at {100 * r['reference']['ceiling_fraction']:.0f}%; "
              f"peak RSS reference {r['reference']['peak_rss_mib']:.0f} MiB, ours {r['ours']['peak_rss_mib']:.0f} MiB",
              flush=True)
    if a.json:
        write_json(a.json, res)
    return res


if __name__ == "__main__":
    main()
    sys.exit(0)
