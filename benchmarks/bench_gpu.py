"""GPU benchmark (never required): what training and testing cost on one GPU.

    python benchmarks/bench_gpu.py [--quick] [--data DIR] [--max-steps N] [--big-batch 32] [--no-compile] [--json F]

Without a CUDA device it prints "no CUDA device: skipped" and exits 0 (`--device cpu --quick
--no-compile` is a dry run of the script's logic, about a minute, not a measurement).

With one, on the full synthetic dataset (23,410 train frames at 512x1024; generated into
data/synth-full with every core if missing, or --data), full model dims:
1. training steps. The reference: the template's DataLoader (PNG decode per item, num_workers =
   min(cores, 8)) and template training step (per-step loop, fp32) at batch 2. Ours: SequenceBatches
   on the GPU + VideoCVAE.forward, at batch 2 and at --big-batch, per precision (fp32 NCHW = the
   template's numerics; bf16 autocast; fp16 autocast with a GradScaler; channels_last as the package
   does), and with torch.compile (bf16; --no-compile skips it).
   Each runs `--max-steps` timed steps after 5 warm-up steps (teacher forcing alternating on/off, as a
   mid-schedule epoch mixes both); the epoch time is EXTRAPOLATED from the median step time to
   ceil(1463 / batch) steps unless --max-steps covers the epoch. Peak GPU memory
   (torch.cuda.max_memory_allocated) and host peak RSS per configuration.
2. the test rollout: lab4.infer.predict_test of the 5 test sequences x 629 generated frames (fp32,
   as lab4-test runs it), median of 3 after a warm-up; and as `lab4-test --compile` runs it (the
   per-frame step under torch.compile, mode reduce-overhead: replayed as a CUDA graph).
3. concurrent runs: 1, 3 and 5 processes on the same GPU, each training ours at batch 2 with the
   package defaults (what `lab4-sweep` places on one GPU); they start their timed steps together
   and the throughput is all their steps / the wall time until the last one ends.
The targets (issue 11): a full epoch <= 30 s on an H100-class GPU and >= 5x the reference;
5 concurrent runs >= 3x the throughput of one.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import apply_threads, ROOT, PeakRSS, quiet_progress, add_common_args, ensure_dataset, median, stamp, write_json  # noqa: E402

FULL_DIMS = dict(F_dim=128, L_dim=32, N_dim=12, D_out_dim=192)
QUICK_DIMS = dict(F_dim=32, L_dim=16, N_dim=4, D_out_dim=48)
T = 16                                                 # frames per training sequence (the template's)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_gpu_peak(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def gpu_peak_mib(device):
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def tf_of(k: int) -> bool:
    return k % 2 == 0                                  # teacher forcing alternating on/off


def run_config(name, step, n_seq: int, batch: int, device, warmup: int, max_steps: int, log=print) -> dict:
    """step(k) runs optimisation step k. Returns per-step median and the epoch estimate."""
    for k in range(warmup):
        step(k)
    sync(device)
    reset_gpu_peak(device)
    times = []
    with PeakRSS() as mem:
        for k in range(max_steps):
            t0 = time.perf_counter()
            step(warmup + k)
            sync(device)
            times.append(time.perf_counter() - t0)
    steps_per_epoch = n_seq // batch
    r = {"name": name, "batch": batch, "step_s": median(times), "steps_timed": len(times),
         "steps_per_epoch": steps_per_epoch, "epoch_s": median(times) * steps_per_epoch,
         "epoch_extrapolated": len(times) < steps_per_epoch, "peak_gpu_mib": gpu_peak_mib(device),
         "peak_rss_mib": mem.mib}
    log(f"[gpu] {name:<44} step {r['step_s'] * 1e3:.1f} ms, epoch {r['epoch_s']:.1f} s"
        f"{' (extrapolated)' if r['epoch_extrapolated'] else ''}, peak GPU {r['peak_gpu_mib'] or 0:.0f} MiB", flush=True)
    return r


def dataset_root(a) -> Path:
    """--data, the quick benchmark set, or data/synth-full (generated with every core if missing)."""
    from lab4.synth import generate_dataset
    if a.data:
        return Path(a.data)
    if a.quick:
        return ensure_dataset(True)[0]
    root = ROOT / "data" / "synth-full"
    if not (root / "synth.json").is_file() or '"complete": true' not in (root / "synth.json").read_text():
        print(f"[gpu] generating {root} (preset full, {os.cpu_count()} workers) ...", flush=True)
        t0 = time.perf_counter()
        generate_dataset(root, "full", seed=0, workers=os.cpu_count(), progress=False)
        print(f"[gpu]   {time.perf_counter() - t0:.0f} s", flush=True)
    return root


def ours_stepper(batches, dims, device, B: int, precision: str, channels_last: bool, compile_: bool):
    """A fresh model (seed 0) on `device` and a step(k) closure over the epoch's sequence order."""
    from bench_train import new_model, ours_step
    model, _ = new_model(dims, False, 0)              # time_chunk 0: all time steps in one call (CUDA default)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    fwd = torch.compile(model) if compile_ else model
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)   # None: fp32
    autocast = torch.autocast(device.type, dtype=dtype) if dtype else None
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    order = batches.epoch_order(0, 0)

    def step(k):
        i = (k * B) % max(1, len(order) - B)
        x, p = batches.batch(order[i:i + B])
        ours_step(fwd, opt, x, p, tf_of(k), autocast, scaler)   # bench_train's step = lab4.train's
    return step


def reference_config(root, dims, n_seq, device, warmup, max_steps) -> dict:
    from bench_train import new_model
    from reference import TemplateDataset, template_train_step
    workers = min(os.cpu_count() or 1, 8)
    g = torch.Generator().manual_seed(0)
    loader = torch.utils.data.DataLoader(TemplateDataset(root, video_len=T), batch_size=2, shuffle=True,
                                         num_workers=workers, generator=g, drop_last=True,
                                         pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    it = iter(loader)
    model, _ = new_model(dims)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def ref_step(k):
        x, p = next(it)
        template_train_step(model, opt, x.to(device, non_blocking=True), p.to(device, non_blocking=True), tf_of(k))
    return run_config("reference: PNG loader + template step, B=2", ref_step, n_seq, 2, device,
                      warmup, max_steps) | {"kind": "reference"}


def training_configs(a, batches, dims, device, warmup, max_steps) -> list[dict]:
    """Ours per batch size, precision and compile."""
    bb = a.big_batch
    specs = [("fp32 NCHW (template numerics)", 2, "fp32", False, False)]
    for B in (2, bb):
        specs += [(f"{prec}, channels_last", B, prec, True, False) for prec in ("fp32", "bf16", "fp16")]
        if a.compile:
            specs.append(("bf16, channels_last, torch.compile", B, "bf16", True, True))
    out = []
    for what, B, prec, cl, comp in specs:
        name = f"ours: {what}, B={B}"
        try:
            step = ours_stepper(batches, dims, device, B, prec, cl, comp)
            out.append(run_config(name, step, batches.num_sequences(), B, device,
                                  warmup + (2 if comp else 0), max_steps)
                       | {"kind": "ours", "precision": prec, "compile": comp, "channels_last": cl})
        except Exception as e:  # noqa: BLE001  -- one failing configuration is reported, the rest run
            print(f"[gpu] {name}: failed ({type(e).__name__}: {str(e)[:200]})", flush=True)
            out.append({"name": name, "kind": "ours", "batch": B, "error": f"{type(e).__name__}: {str(e)[:200]}"})
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def rollout_time(root, dims, device, repeats: int, compile_: bool) -> dict:
    """The 5 test sequences rolled out together, as lab4-test does (fp32, channels_last); with compile_
    also as `lab4-test --compile` does (the per-frame step compiled, replayed as a CUDA graph)."""
    from lab4.data import load_split
    from lab4.infer import predict_test
    from lab4.model import VideoCVAE
    test = load_split(root, "test", workers=os.cpu_count())
    torch.manual_seed(0)
    model = VideoCVAE(**dims).to(device).to(memory_format=torch.channels_last).eval()
    r = {"repeats": repeats}
    for name, compiled in [("eager", False)] + ([("compiled", True)] if compile_ else []):
        model.compile_rollout = compiled
        sync(device)
        t0 = time.perf_counter()
        predict_test(model, test, progress=False)                 # warm-up (compiling, graph capture)
        sync(device)
        warmup, times = time.perf_counter() - t0, []
        for _ in range(repeats):
            t0 = time.perf_counter()
            pred = predict_test(model, test, progress=False)
            sync(device)
            times.append(time.perf_counter() - t0)
        r[name] = {"rollout_s": median(times), "warmup_s": warmup}
        r["sequences"], r["frames"] = int(pred.shape[0]), int(pred.shape[1])
        print(f"[gpu] test rollout ({name}): {r['sequences']} sequences x {r['frames']} frames in "
              f"{median(times):.2f} s (median of {repeats}; first run incl. warm-up {warmup:.1f} s)", flush=True)
    r["rollout_s"] = r["eager"]["rollout_s"]
    return r


# ---- concurrent runs: one worker process per run ------------------------------------------------
def worker(a) -> None:
    """--worker: load, warm up, say ready, wait for the go file, run the timed steps, print JSON."""
    device = torch.device(a.device)
    from lab4.data import SequenceBatches, load_split
    dims = QUICK_DIMS if a.quick else FULL_DIMS
    batches = SequenceBatches(load_split(a.data, "train", workers=1), T, device)
    prec = "bf16" if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0) else "fp32"
    step = ours_stepper(batches, dims, device, 2, prec, True, False)
    for k in range(3):
        step(k)
    sync(device)
    sync_dir = Path(a.worker)
    (sync_dir / f"ready{os.getpid()}").touch()
    while not (sync_dir / "go").exists():
        time.sleep(0.01)
    for k in range(a.max_steps):
        step(3 + k)
    sync(device)
    print(json.dumps({"end": time.time(), "steps": a.max_steps}), flush=True)


def concurrent_throughput(root, device, quick: bool, steps: int, counts=(1, 3, 5)) -> list[dict]:
    """Steps per second of all runs together, for each number of concurrent runs on one device."""
    out = []
    for n in counts:
        with tempfile.TemporaryDirectory() as sync_dir:
            cmd = [sys.executable, __file__, "--worker", sync_dir, "--data", str(root), "--device", str(device),
                   "--max-steps", str(steps)] + (["--quick"] if quick else [])
            procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(n)]
            while len(list(Path(sync_dir).glob("ready*"))) < n:
                if any(p.poll() not in (None, 0) for p in procs):
                    break
                time.sleep(0.05)
            t0 = time.time()
            (Path(sync_dir) / "go").touch()
            results = [p.communicate()[0] for p in procs]
        try:
            ends = [json.loads(r.strip().splitlines()[-1])["end"] for r in results]
        except (ValueError, IndexError):
            print(f"[gpu] {n} concurrent runs: a worker failed", flush=True)
            out.append({"runs": n, "error": "a worker failed"})
            continue
        wall = max(ends) - t0
        out.append({"runs": n, "steps_each": steps, "wall_s": wall, "steps_per_s": n * steps / wall})
    for r in out:
        if "steps_per_s" in r:
            r["vs_one"] = r["steps_per_s"] / out[0]["steps_per_s"] if "steps_per_s" in out[0] else None
            print(f"[gpu] {r['runs']} concurrent run(s) at B=2: {r['steps_per_s']:.1f} steps/s together "
                  f"({r['vs_one'] or 0:.2f}x one run)", flush=True)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap)
    ap.add_argument("--data", help="dataset root (default: data/synth-full, generated if missing)")
    ap.add_argument("--max-steps", type=int, default=60, help="timed steps per configuration")
    ap.add_argument("--big-batch", type=int, default=32)
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                    help="also time torch.compile (bf16, both batch sizes)")
    ap.add_argument("--device", default="cuda", help=argparse.SUPPRESS)   # cpu: a dry run of this script's logic
    ap.add_argument("--worker", help=argparse.SUPPRESS)                    # a concurrent-run process
    a = ap.parse_args(argv)
    apply_threads(a.threads)
    quiet_progress()
    if a.worker:
        worker(a)
        return {}
    if a.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: skipped", flush=True)
        res = {"section": "gpu", **stamp(), "skipped": True, "reason": "no CUDA device"}
        if a.json:
            write_json(a.json, res)
        return res

    from lab4.data import SequenceBatches, load_split
    device = torch.device(a.device)
    t_start = time.perf_counter()
    root = dataset_root(a)
    dims = QUICK_DIMS if a.quick else FULL_DIMS
    warmup = 1 if a.quick else 5
    max_steps = min(a.max_steps, 3) if a.quick else a.max_steps
    res = {"section": "gpu", **stamp(), "skipped": False, "quick": a.quick, "device": str(device),
           "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)",
           "dims": dims, "T": T, "dataset": str(root), "configs": []}
    t0 = time.perf_counter()
    split = load_split(root, "train", workers=os.cpu_count())
    res["cache_load_s"] = time.perf_counter() - t0
    batches = SequenceBatches(split, T, device)
    res["configs"].append(reference_config(root, dims, batches.num_sequences(), device, warmup, max_steps))
    res["configs"] += training_configs(a, batches, dims, device, warmup, max_steps)
    ref_epoch = res["configs"][0]["epoch_s"]
    for c in res["configs"][1:]:
        if "epoch_s" in c:
            c["ratio_vs_reference"] = ref_epoch / c["epoch_s"]
            print(f"[gpu] RATIO epoch time reference / ({c['name']}) = {c['ratio_vs_reference']:.1f}x", flush=True)
    del batches, split
    res["rollout"] = rollout_time(root, dims, device, 1 if a.quick else 3, a.compile)
    res["concurrent"] = concurrent_throughput(root, device, a.quick, max_steps * (1 if a.quick else 2),
                                              (1, 2) if a.quick else (1, 3, 5))
    res["total_s"] = time.perf_counter() - t_start
    print(f"[gpu] total {res['total_s']:.0f} s", flush=True)
    if a.json:
        write_json(a.json, res)
    return res


if __name__ == "__main__":
    main()
    sys.exit(0)
