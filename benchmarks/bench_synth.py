"""Time the synthetic dataset generator: frames/s, total seconds and peak memory.

    python benchmarks/bench_synth.py [--preset demo|mini|full] [--workers N] [--out DIR] [--keep]

Writes into a fresh temporary folder (or --out) and deletes it afterwards unless --keep.
"""
import argparse
import os
import pathlib
import resource
import shutil
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from lab4.synth import PRESETS, generate_dataset  # noqa: E402


def peak_rss_mib() -> tuple[float, float]:
    """Peak resident memory of this process and of its (finished) worker processes, in MiB."""
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return me, kids


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    ap.add_argument("--workers", type=int, default=None, help="default: all cores")
    ap.add_argument("--out", help="output folder (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the generated data")
    ap.add_argument("--progress", action="store_true", help="show the progress bar")
    a = ap.parse_args(argv)
    cfg = PRESETS[a.preset]
    parent = tempfile.mkdtemp(prefix="bench_synth_")
    out = pathlib.Path(a.out) if a.out else pathlib.Path(parent) / "data"
    try:
        t0 = time.perf_counter()
        generate_dataset(out, a.preset, seed=0, workers=a.workers, progress=a.progress)
        dt = time.perf_counter() - t0
        # frames rendered: train + val (image and label), test (label + in-memory image)
        frames = cfg.n_train + cfg.n_val + cfg.n_test * cfg.test_len
        pngs = 2 * (cfg.n_train + cfg.n_val) + cfg.n_test * (cfg.test_len + 1)
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
        me, kids = peak_rss_mib()
        print(f"preset={a.preset} {cfg.height}x{cfg.width} workers={a.workers or os.cpu_count()} "
              f"cores={os.cpu_count()}")
        print(f"total {dt:.1f} s  {frames / dt:.0f} frames/s ({frames} frames, {pngs} PNGs, "
              f"{size:.0f} MiB on disk)")
        print(f"peak RSS: main {me:.0f} MiB, largest worker {kids:.0f} MiB")
    finally:
        if not a.keep:
            shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
