"""Rollout benchmark: the 5 test sequences x 629 generated frames, end to end to submission.csv.

    python benchmarks/bench_rollout.py [--quick] [--prefix P] [--full] [--with-compile] [--json FILE]

Reference (the template's Tester): the test PNGs decoded per item through a DataLoader
(batch 1), one sequence at a time, a per-step loop under torch.no_grad() (encode the pose, encode
the previous generated frame, draw z, decode), then a pandas DataFrame of rint(x * 255) -> CSV.
Ours: load_split (warm uint8 cache) + lab4.infer.predict_test (VideoCVAE.rollout: all sequences
together, poses encoded in chunks, inference_mode; the model in channels_last as
lab4.checkpoint.load_model builds it by default) + write_test_outputs(gifs=False).
Neither side writes GIFs. Full model dims.

A full CPU rollout takes minutes per side, so by default both sides roll out the first P frames
of every sequence (median of repeated runs, after a warm-up), and the 629-frame figures are
EXTRAPOLATED: load + (time per frame) x 629 + CSV write. --full also runs ours end to end for
real (predict_test + write_test_outputs) once, to check the extrapolation.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import os
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import apply_threads, PeakRSS, quiet_progress, add_common_args, children_peak_mib, ensure_dataset, median, stamp, write_json  # noqa: E402
from reference import TemplateTestDataset, template_rollout, template_write_submission  # noqa: E402

from lab4.data import load_split  # noqa: E402
from lab4.infer import predict_test, write_test_outputs  # noqa: E402
from lab4.device import autocast
from lab4.model import VideoCVAE  # noqa: E402
from lab4.score import frames_to_rows  # noqa: E402

FULL_DIMS = dict(F_dim=128, L_dim=32, N_dim=12, D_out_dim=192)
QUICK_DIMS = dict(F_dim=32, L_dim=16, N_dim=4, D_out_dim=48)
TARGET = 1.5
SEED = 0


def package_channels_last() -> bool:
    """lab4.checkpoint.load_model puts the model in channels_last when the config says so (default)."""
    from lab4.config import TrainConfig
    return bool(getattr(TrainConfig(), "channels_last", False))


def load_reference(root, workers: int):
    """Decode every test PNG the template's way; returns ([(first, labels)], seconds, peak MiB)."""
    loader = torch.utils.data.DataLoader(TemplateTestDataset(root), batch_size=1, shuffle=False,
                                         num_workers=workers)
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        items = [(first[0], labels[0]) for first, labels in loader]
        dt = time.perf_counter() - t0
    return items, dt, mem.mib


def ref_rollout(model, items, n: int) -> list[torch.Tensor]:
    """The template's loop, one sequence at a time, frames 0..n (n generated)."""
    return [template_rollout(model, first, labels[:n + 1], torch.Generator().manual_seed(SEED * 1000 + k))
            for k, (first, labels) in enumerate(items)]


def ours_rollout(model, test, n: int) -> torch.Tensor:
    """What predict_test does, for frames 0..n of every sequence."""
    S = test.labels.shape[0]
    return model.rollout(torch.from_numpy(test.images), torch.from_numpy(test.labels[:, :n + 1]),
                         seeds=[SEED * 1000 + s for s in range(S)]).cpu()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap)
    ap.add_argument("--prefix", type=int, help="generated frames per sequence in a timed run (default 20; quick 3)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="reference DataLoader num_workers")
    ap.add_argument("--no-options", action="store_true", help="skip channels_last / bf16 variants of ours")
    ap.add_argument("--with-compile", action="store_true", help="also time `--compile`'s rollout step (minutes of compiling)")
    ap.add_argument("--full", action="store_true", help="also run ours end to end over all 629 frames (slow on a CPU)")
    a = ap.parse_args(argv)
    apply_threads(a.threads)
    quiet_progress()
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    dims = QUICK_DIMS if a.quick else FULL_DIMS
    P = a.prefix or (3 if a.quick else 20)
    root, ds_info = ensure_dataset(a.quick)
    res = {"section": "rollout", **stamp(), "quick": a.quick, "dims": dims, "dataset": ds_info,
           "threads": torch.get_num_threads(), "prefix_frames": P, "target_ratio": TARGET, "gifs": False}

    # -- loading the test split ------------------------------------------------------------------
    items, ref_load, ref_load_mem = load_reference(root, a.workers)
    S, T = len(items), items[0][1].shape[0]
    res["reference_load"] = {"s": ref_load, "pngs": S * (T + 1), "num_workers": a.workers,
                             "peak_rss_mib": ref_load_mem, "peak_rss_worker_mib": children_peak_mib()}
    with tempfile.TemporaryDirectory(prefix="bench_rollout_cache_") as tmp:
        t0 = time.perf_counter()
        load_split(root, "test", cache_dir=tmp, workers=a.workers)
        cold = time.perf_counter() - t0
        warm_runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            test = load_split(root, "test", cache_dir=tmp, workers=a.workers)
            warm_runs.append(time.perf_counter() - t0)
        test.images, test.labels = test.images.copy(), test.labels.copy()   # detach from the temp folder
    res["ours_load"] = {"warm_s": median(warm_runs), "cold_cache_build_s": cold}
    print(f"[rollout] {S} sequences x {T} frames; load: reference (PNG decode) {ref_load:.1f} s, ours warm cache "
          f"{res['ours_load']['warm_s'] * 1e3:.0f} ms (one-time cache build {cold:.1f} s)", flush=True)

    # -- the rollout itself ----------------------------------------------------------------------
    torch.manual_seed(0)
    model = VideoCVAE(**dims).eval()                   # the template's model (NCHW): the reference
    cl = package_channels_last()
    ours_model = copy.deepcopy(model)                  # ours as lab4.checkpoint.load_model builds it
    if cl:
        ours_model = ours_model.to(memory_format=torch.channels_last)
    res["ours_channels_last"] = cl
    ref_rollout(model, items, 2)                       # warm-up both paths
    ours_rollout(ours_model, test, 2)
    ref_t, ours_t, ref_mem, ours_mem = [], [], 0.0, 0.0
    for _ in range(a.repeats):                         # alternate, so load drift hits both
        with PeakRSS() as m1:
            t0 = time.perf_counter()
            ref_out = ref_rollout(model, items, P)
            ref_t.append(time.perf_counter() - t0)
        with PeakRSS() as m2:
            t0 = time.perf_counter()
            ours_out = ours_rollout(ours_model, test, P)
            ours_t.append(time.perf_counter() - t0)
        ref_mem, ours_mem = max(ref_mem, m1.mib), max(ours_mem, m2.mib)
    diff = float((torch.stack(ref_out) - ours_out).abs().max())
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc:
        ours_rollout(ours_model, test, 1)
    res["flops_per_frame"] = float(fc.get_total_flops())        # one generated frame of all S sequences
    ref_pf, ours_pf = median(ref_t) / P, median(ours_t) / P
    res["reference_rollout"] = {"prefix_s": median(ref_t), "runs_s": ref_t, "per_frame_s": ref_pf,
                                "peak_rss_mib": ref_mem}
    res["ours_rollout"] = {"prefix_s": median(ours_t), "runs_s": ours_t, "per_frame_s": ours_pf,
                           "peak_rss_mib": ours_mem}
    res["max_abs_diff_prefix"] = diff
    res["rollout_ratio"] = ref_pf / ours_pf
    print(f"[rollout] rollout of {P} frames x {S} sequences: reference {median(ref_t):.2f} s, ours {median(ours_t):.2f} s "
          f"-> per generated frame (all {S} sequences) {ref_pf:.3f} s vs {ours_pf:.3f} s; RATIO {ref_pf / ours_pf:.2f}x; "
          f"max |ref - ours| {diff:.1e}", flush=True)

    # -- options on ours (candidate package changes) -------------------------------------------
    res["options"] = []
    if not a.no_options:
        base_pf = ours_pf
        specs = [("nchw", "channels_last off (the template's NCHW model)", False, False, False),
                 ("bf16_autocast", f"`lab4-test --cpu_amp`: bf16 autocast around the rollout (channels_last {cl})",
                  cl, True, False)]
        if a.with_compile:
            specs.append(("compile", f"`lab4-test --compile`: the per-frame step under torch.compile (inductor; "
                          f"channels_last {cl})", cl, False, True))
        for name, desc, opt_cl, bf16, compiled in specs:
            m2 = copy.deepcopy(model)
            if opt_cl:
                m2 = m2.to(memory_format=torch.channels_last)
            m2.compile_rollout = compiled
            ctx = autocast(torch.device("cpu"), "bf16") if bf16 else contextlib.nullcontext()
            try:
                with ctx:
                    t0 = time.perf_counter()
                    ours_rollout(m2, test, 2)
                    warmup = time.perf_counter() - t0
                    ts = []
                    for _ in range(2):
                        t0 = time.perf_counter()
                        out = ours_rollout(m2, test, P)
                        ts.append(time.perf_counter() - t0)
                pf = median(ts) / P
                o = {"name": name, "description": desc, "changes_numerics": bf16, "per_frame_s": pf,
                     "speedup_vs_ours": base_pf / pf, "ratio_vs_reference": ref_pf / pf,
                     "max_abs_diff_vs_fp32": float((out.float() - ours_out).abs().max()), "warmup_s": warmup}
                print(f"[rollout] option {name:<28} {pf:.3f} s per frame: x{o['speedup_vs_ours']:.2f} vs ours, "
                      f"{o['ratio_vs_reference']:.2f}x vs reference (max |diff| {o['max_abs_diff_vs_fp32']:.1e}; "
                      f"first 2 frames incl. compiling {warmup:.1f} s)", flush=True)
            except Exception as e:  # noqa: BLE001
                o = {"name": name, "description": desc, "error": f"{type(e).__name__}: {str(e)[:200]}"}
                print(f"[rollout] option {name}: failed ({o['error']})", flush=True)
            res["options"].append(o)

    # -- writing submission.csv (a 630-frame prediction, same values for both writers) ----------
    reps = -(-T // (P + 1))
    full_pred = ours_out.repeat(1, reps, 1, 1, 1)[:, :T].contiguous()
    with tempfile.TemporaryDirectory(prefix="bench_rollout_out_") as tmp:
        with PeakRSS() as m1:
            t0 = time.perf_counter()
            template_write_submission(list(full_pred), os.path.join(tmp, "ref.csv"))
            ref_w = time.perf_counter() - t0
        with PeakRSS() as m2:
            t0 = time.perf_counter()
            write_test_outputs(full_pred, os.path.join(tmp, "ours"), gifs=False)
            ours_w = time.perf_counter() - t0
        same = open(os.path.join(tmp, "ref.csv")).read() == open(os.path.join(tmp, "ours", "submission.csv")).read()
    # the values each writer puts in the CSV: float32 rint(x * 255) (template) vs float64 + clip (ours)
    ref_vals = np.rint(full_pred.reshape(S * T, -1).numpy() * 255).astype(int)
    ours_vals = frames_to_rows(full_pred).astype(int)
    n_diff = int((ref_vals != ours_vals).sum())
    res["reference_write"] = {"s": ref_w, "peak_rss_mib": m1.mib}
    res["ours_write"] = {"s": ours_w, "peak_rss_mib": m2.mib, "identical_csv": same, "values_differing": n_diff,
                         "values": int(ref_vals.size), "max_value_diff": int(np.abs(ref_vals - ours_vals).max())}
    print(f"[rollout] submission.csv ({S * T} rows): reference writer {ref_w:.1f} s, ours {ours_w:.1f} s "
          f"(byte-identical: {same}"
          + (f"; {n_diff} of {ref_vals.size} values differ, by at most {res['ours_write']['max_value_diff']}: "
             "float32 vs float64 rounding at .5" if n_diff else "") + ")", flush=True)

    # -- end to end, extrapolated to 629 frames ---------------------------------------------------
    gen = T - 1
    ref_e2e = ref_load + ref_pf * gen + ref_w
    ours_e2e = res["ours_load"]["warm_s"] + ours_pf * gen + ours_w
    res["extrapolated"] = {"frames": gen, "reference_s": ref_e2e, "ours_s": ours_e2e, "ratio": ref_e2e / ours_e2e,
                           "ours_with_cold_cache_s": ours_e2e + cold,
                           "ratio_with_cold_cache": ref_e2e / (ours_e2e + cold)}
    res["ratio"] = ref_e2e / ours_e2e
    res["met"] = bool(res["ratio"] >= TARGET)
    for o in res["options"]:                            # the options end to end (same load and CSV as ours)
        if "error" not in o:
            o["end_to_end_s"] = res["ours_load"]["warm_s"] + o["per_frame_s"] * gen + ours_w
            o["end_to_end_ratio"] = ref_e2e / o["end_to_end_s"]
    print(f"[rollout] END TO END, EXTRAPOLATED to {gen} frames: reference {ref_e2e:.0f} s, ours {ours_e2e:.0f} s "
          f"-> RATIO {res['ratio']:.2f}x (target >= {TARGET}x: {'met' if res['met'] else 'NOT met'}); "
          f"rollout alone {res['rollout_ratio']:.2f}x; with ours' one-time cache build {res['extrapolated']['ratio_with_cold_cache']:.2f}x",
          flush=True)

    if a.full:                                          # ours for real, end to end
        with tempfile.TemporaryDirectory(prefix="bench_rollout_full_") as tmp, PeakRSS() as mem:
            t0 = time.perf_counter()
            t_split = load_split(root, "test", workers=a.workers)
            pred = predict_test(ours_model, t_split, seed=SEED, progress=False)
            write_test_outputs(pred, tmp, gifs=False)
            dt = time.perf_counter() - t0
        res["ours_full_measured"] = {"s": dt, "peak_rss_mib": mem.mib}
        print(f"[rollout] ours measured end to end over {gen} frames: {dt:.0f} s (extrapolated {ours_e2e:.0f} s)", flush=True)
    if a.json:
        write_json(a.json, res)
    return res


if __name__ == "__main__":
    main()
    sys.exit(0)
