"""Loader benchmark: 16-frame training sequences per second from a 512x1024 PNG dataset.

    python benchmarks/bench_loader.py [--quick] [--workers N] [--json FILE]

Reference: the template's Dataset (16 image + 16 label PNGs opened with PIL and resized by
torchvision's Resize((32, 64)) + ToTensor in every __getitem__) through
DataLoader(batch_size=2, shuffle=True, num_workers=N); N defaults to the machine's cores.
Ours: lab4.data.SequenceBatches over the warm uint8 cache (index + uint8 -> float / 255).
The one-time cache build (decode every train PNG once, in parallel) is timed separately.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (apply_threads, PeakRSS, quiet_progress, add_common_args, children_peak_mib, ensure_dataset, median,  # noqa: E402
                    ratio, stamp, write_json)
from reference import TemplateDataset  # noqa: E402

from lab4.data import SequenceBatches, load_split  # noqa: E402

SEQ_LEN, BATCH = 16, 2
TARGET = 100.0


def bench_reference(root, workers: int, batches: int, repeats: int, seed: int = 0) -> dict:
    """Median sequences/s over `repeats` runs of `batches` batches each, after a warm-up of
    two batches (worker start-up and the first prefetches are excluded)."""
    ds = TemplateDataset(root, video_len=SEQ_LEN)
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=workers,
                                         generator=g, drop_last=True)
    need = 2 + batches * repeats
    if need > len(loader):
        raise SystemExit(f"bench_loader: {len(loader)} batches per epoch, {need} needed; use fewer --batches/--repeats")
    with PeakRSS() as mem:
        it = iter(loader)
        t0 = time.perf_counter()
        for _ in range(2):
            next(it)
        startup = time.perf_counter() - t0
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(batches):
                x, p = next(it)
            runs.append(time.perf_counter() - t0)
        assert x.shape == (BATCH, SEQ_LEN, 3, 32, 64) and x.dtype == torch.float32
        del it  # shuts the workers down, so their peak RSS is counted below
    seq_s = [batches * BATCH / t for t in runs]
    return {"seq_per_s": median(seq_s), "runs_seq_per_s": seq_s, "batches_per_run": batches,
            "warmup_s": startup, "num_workers": workers, "peak_rss_mib": mem.mib,
            "peak_rss_worker_mib": children_peak_mib() if workers > 0 else None,
            "pngs_per_sequence": 2 * SEQ_LEN}


def bench_cache_build(root, workers: int) -> tuple[dict, object]:
    """Cold cache build of the train split into a fresh folder, then a warm load of it."""
    with tempfile.TemporaryDirectory(prefix="bench_cache_") as tmp:
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            split = load_split(root, "train", cache_dir=tmp, workers=workers)
            cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm_split = load_split(root, "train", cache_dir=tmp, workers=workers)
        warm = time.perf_counter() - t0
        n = len(split.images)
        assert np.array_equal(warm_split.images, split.images)
        size = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp)) / 2**20
    return ({"cold_s": cold, "warm_load_s": warm, "frames": n, "pngs": 2 * n, "workers": workers,
             "pngs_per_s": 2 * n / cold, "cache_mib": size, "peak_rss_mib": mem.mib}, split)


def bench_ours(split, repeats: int, seed: int = 0) -> dict:
    """Median sequences/s over `repeats` full epochs of batches (after one warm-up epoch)."""
    with PeakRSS() as mem:
        batches = SequenceBatches(split, SEQ_LEN)
        n_batches = batches.num_sequences() // BATCH

        def epoch(e):
            order = batches.epoch_order(e, seed)
            for k in range(n_batches):
                x, p = batches.batch(order[k * BATCH:(k + 1) * BATCH])
            return x

        x = epoch(0)
        assert x.shape == (BATCH, SEQ_LEN, 3, 32, 64) and x.dtype == torch.float32
        runs = []
        for r in range(repeats):
            t0 = time.perf_counter()
            epoch(r + 1)
            runs.append(time.perf_counter() - t0)
    seq_s = [n_batches * BATCH / t for t in runs]
    return {"seq_per_s": median(seq_s), "runs_seq_per_s": seq_s, "batches_per_run": n_batches,
            "peak_rss_mib": mem.mib}


def bench_numpy_candidate(split, repeats: int, seed: int = 0) -> dict:
    """A candidate change to SequenceBatches.batch for the CPU device: gather and scale in numpy
    (one thread, no OpenMP region per op), same values (uint8 / 255 in float32)."""
    images, labels = np.ascontiguousarray(split.images), np.ascontiguousarray(split.labels)
    n_seq = len(images) // SEQ_LEN
    n_batches = n_seq // BATCH
    ar = np.arange(SEQ_LEN)

    def batch(ids):
        idx = ids[:, None] * SEQ_LEN + ar
        return (torch.from_numpy(np.divide(images[idx], np.float32(255), dtype=np.float32)),
                torch.from_numpy(np.divide(labels[idx], np.float32(255), dtype=np.float32)))

    ref = SequenceBatches(split, SEQ_LEN).batch(torch.tensor([0, 1]))
    got = batch(np.array([0, 1]))
    assert all(torch.equal(a, b) for a, b in zip(ref, got)), "numpy candidate differs from SequenceBatches"
    runs = []
    for r in range(repeats + 1):
        order = torch.randperm(n_seq, generator=torch.Generator().manual_seed(seed + r)).numpy()
        t0 = time.perf_counter()
        for k in range(n_batches):
            batch(order[k * BATCH:(k + 1) * BATCH])
        runs.append(time.perf_counter() - t0)
    seq_s = [n_batches * BATCH / t for t in runs[1:]]
    return {"seq_per_s": median(seq_s), "runs_seq_per_s": seq_s}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap)
    ap.add_argument("--workers", type=int, default=os.cpu_count(),
                    help="reference DataLoader num_workers (default: all cores)")
    ap.add_argument("--batches", type=int, help="reference batches per timed run")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    apply_threads(a.threads)
    quiet_progress()
    batches = a.batches or (2 if a.quick else 12)
    root, ds_info = ensure_dataset(a.quick)
    print(f"[loader] dataset {ds_info['path']}: {ds_info['n_train']} train frames at "
          f"{ds_info['height']}x{ds_info['width']}; DataLoader num_workers={a.workers} "
          f"({os.cpu_count()} cores)", flush=True)
    res = {"section": "loader", **stamp(), "quick": a.quick, "dataset": ds_info, "seq_len": SEQ_LEN,
           "batch_size": BATCH, "target_ratio": TARGET}

    ref = bench_reference(root, a.workers, batches, a.repeats)
    print(f"[loader] reference (PNG decode + Resize per item): {ref['seq_per_s']:.2f} seq/s "
          f"(runs {', '.join(f'{v:.2f}' for v in ref['runs_seq_per_s'])}); peak RSS main "
          f"{ref['peak_rss_mib']:.0f} MiB, worker {ref['peak_rss_worker_mib'] or 0:.0f} MiB", flush=True)
    cache, split = bench_cache_build(root, a.workers)
    print(f"[loader] one-time cache build: {cache['cold_s']:.1f} s for {cache['pngs']} PNGs "
          f"({cache['pngs_per_s']:.0f} PNG/s, {a.workers} workers, {cache['cache_mib']:.0f} MiB cache); "
          f"warm load {cache['warm_load_s'] * 1e3:.0f} ms", flush=True)
    ours = bench_ours(split, a.repeats + 2)
    print(f"[loader] ours (SequenceBatches, warm uint8 cache): {ours['seq_per_s']:.0f} seq/s; "
          f"peak RSS {ours['peak_rss_mib']:.0f} MiB", flush=True)
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ours1 = bench_ours(split, a.repeats + 2)
    torch.set_num_threads(n_threads)
    cand = bench_numpy_candidate(split, a.repeats + 2)
    res.update(ours_1thread=ours1, numpy_candidate=cand)
    print(f"[loader]   same on 1 intra-op thread: {ours1['seq_per_s']:.0f} seq/s; candidate numpy gather "
          f"(same values): {cand['seq_per_s']:.0f} seq/s", flush=True)
    r = ratio(ours["seq_per_s"], ref["seq_per_s"])
    # The cache pays for itself after this many sequences (vs decoding per item):
    breakeven = cache["cold_s"] * ref["seq_per_s"]
    res.update(reference=ref, cache_build=cache, ours=ours, ratio=r, met=bool(r >= TARGET),
               cache_breakeven_sequences=breakeven)
    print(f"[loader] RATIO ours/reference = {r:.0f}x (target >= {TARGET:.0f}x: "
          f"{'met' if r >= TARGET else 'NOT met'}); the cache build equals {breakeven:.0f} reference "
          f"sequences (an epoch is {len(split.images) // SEQ_LEN})", flush=True)
    if a.json:
        write_json(a.json, res)
    return res


if __name__ == "__main__":
    main()
    sys.exit(0)
