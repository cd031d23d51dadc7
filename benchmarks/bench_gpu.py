"""GPU benchmark (never required): training epoch time on the full-size synthetic dataset.

    python benchmarks/bench_gpu.py [--quick] [--data DIR] [--max-steps N] [--big-batch 32] [--compile] [--json F]

Without a CUDA device it prints "no CUDA device: skipped" and exits 0.

With one, on the full synthetic dataset (23,410 train frames at 512x1024; generated into
data/synth-full with every core if missing, or --data):
- reference: the template's DataLoader (PNG decode per item, num_workers = min(cores, 8)) and
  template training step (per-step loop, fp32) at batch 2;
- ours at batch 2: SequenceBatches on the GPU + VideoCVAE.forward, fp32 NCHW, and with the package's
  defaults (lab4.train on CUDA: bf16 autocast, channels_last, all time steps in one call);
- ours at a larger batch (--big-batch) with bf16 autocast and channels_last (and torch.compile
  with --compile).
Each runs `--max-steps` timed steps after 5 warm-up steps (teacher forcing alternating on/off,
as a mid-schedule epoch mixes both); the epoch time is EXTRAPOLATED from the median step time
to ceil(1463 / batch) steps unless --max-steps covers the epoch. Peak GPU memory
(torch.cuda.max_memory_allocated) and host peak RSS per configuration.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import apply_threads, ROOT, PeakRSS, quiet_progress, add_common_args, ensure_dataset, median, stamp, write_json  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_gpu_peak(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def gpu_peak_mib(device):
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


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
    log(f"[gpu] {name:<40} step {r['step_s'] * 1e3:.1f} ms, epoch {r['epoch_s']:.1f} s"
        f"{' (extrapolated)' if r['epoch_extrapolated'] else ''}, peak GPU {r['peak_gpu_mib'] or 0:.0f} MiB", flush=True)
    return r


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap)
    ap.add_argument("--data", help="dataset root (default: data/synth-full, generated if missing)")
    ap.add_argument("--max-steps", type=int, default=100, help="timed steps per configuration")
    ap.add_argument("--big-batch", type=int, default=32)
    ap.add_argument("--compile", action="store_true", help="also try torch.compile on the big-batch configuration")
    ap.add_argument("--device", default="cuda", help=argparse.SUPPRESS)   # cpu: a dry run of this script's logic
    a = ap.parse_args(argv)
    apply_threads(a.threads)
    quiet_progress()
    if a.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: skipped", flush=True)
        res = {"section": "gpu", **stamp(), "skipped": True, "reason": "no CUDA device"}
        if a.json:
            write_json(a.json, res)
        return res

    from reference import TemplateDataset, template_train_step
    from bench_train import new_model, ours_step
    from lab4.config import TrainConfig
    from lab4.data import SequenceBatches, load_split
    from lab4.synth import generate_dataset

    device = torch.device(a.device)
    if a.data:
        root = a.data
    elif a.quick:
        root, _ = ensure_dataset(True)
    else:
        root = ROOT / "data" / "synth-full"
        if not (root / "synth.json").is_file() or '"complete": true' not in (root / "synth.json").read_text():
            print(f"[gpu] generating {root} (preset full, {os.cpu_count()} workers) ...", flush=True)
            t0 = time.perf_counter()
            generate_dataset(root, "full", seed=0, workers=os.cpu_count(), progress=False)
            print(f"[gpu]   {time.perf_counter() - t0:.0f} s", flush=True)
    dims = dict(F_dim=32, L_dim=16, N_dim=4, D_out_dim=48) if a.quick else dict(F_dim=128, L_dim=32, N_dim=12, D_out_dim=192)
    T, warmup = 16, (1 if a.quick else 5)
    max_steps = min(a.max_steps, 3) if a.quick else a.max_steps
    workers = min(os.cpu_count() or 1, 8)
    res = {"section": "gpu", **stamp(), "skipped": False, "quick": a.quick, "device": str(device),
           "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)",
           "dims": dims, "T": T, "dataset": str(root), "configs": []}
    t0 = time.perf_counter()
    split = load_split(root, "train", workers=os.cpu_count())
    res["cache_load_s"] = time.perf_counter() - t0
    batches = SequenceBatches(split, T, device)
    n_seq = batches.num_sequences()
    g = torch.Generator().manual_seed(0)
    tf_of = lambda k: k % 2 == 0                       # teacher forcing alternating on/off

    # reference: template loader + template step, batch 2, fp32
    loader = torch.utils.data.DataLoader(TemplateDataset(root, video_len=T), batch_size=2, shuffle=True,
                                         num_workers=workers, generator=g, drop_last=True,
                                         pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    it = iter(loader)
    model, opt = new_model(dims)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def ref_step(k):
        x, p = next(it)
        template_train_step(model, opt, x.to(device, non_blocking=True), p.to(device, non_blocking=True), tf_of(k))
    res["configs"].append(run_config("reference: PNG loader + template step, B=2", ref_step, n_seq, 2, device,
                                     warmup, max_steps) | {"kind": "reference"})
    del it, loader

    # ours at batch 2 and at the big batch
    cfg = TrainConfig()                                # lab4.train's defaults on CUDA
    cl_default = bool(getattr(cfg, "channels_last", False))
    amp_default = bool(getattr(cfg, "amp", False))
    chunk_default = getattr(cfg, "time_chunk", -1)
    chunk_default = chunk_default if chunk_default >= 0 else 0

    def ours_cfg(name, B, bf16=amp_default, channels_last=cl_default, compile_=False):
        model, _ = new_model(dims, False, chunk_default)
        model = model.to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        fwd = torch.compile(model) if compile_ else model
        order = batches.epoch_order(0, 0)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else None

        def step(k):
            i = (k * B) % max(1, len(order) - B)
            x, p = batches.batch(order[i:i + B])
            ours_step(fwd, opt, x, p, tf_of(k), autocast)
        try:
            return run_config(name, step, n_seq, B, device, warmup + (2 if compile_ else 0), max_steps) | {"kind": "ours"}
        except Exception as e:  # noqa: BLE001
            print(f"[gpu] {name}: failed ({type(e).__name__}: {e})", flush=True)
            return {"name": name, "kind": "ours", "error": f"{type(e).__name__}: {str(e)[:200]}"}

    res["package_defaults"] = {"channels_last": cl_default, "amp_bf16": amp_default, "time_chunk": chunk_default}
    res["configs"].append(ours_cfg("ours: fp32 NCHW (template numerics), B=2", 2, bf16=False, channels_last=False))
    res["configs"].append(ours_cfg(f"ours: package defaults (bf16 {amp_default}, channels_last {cl_default}), B=2", 2))
    bb = a.big_batch
    res["configs"].append(ours_cfg(f"ours: B={bb}, bf16 autocast, channels_last", bb, bf16=True, channels_last=True))
    if a.compile:
        res["configs"].append(ours_cfg(f"ours: B={bb}, bf16, channels_last, torch.compile", bb, True, True, True))
    ref_epoch = res["configs"][0]["epoch_s"]
    for c in res["configs"][1:]:
        if "epoch_s" in c:
            c["ratio_vs_reference"] = ref_epoch / c["epoch_s"]
            print(f"[gpu] RATIO epoch time reference / ({c['name']}) = {c['ratio_vs_reference']:.1f}x", flush=True)
    if a.json:
        write_json(a.json, res)
    return res


if __name__ == "__main__":
    main()
    sys.exit(0)
