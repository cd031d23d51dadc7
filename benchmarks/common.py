"""Shared helpers of the benchmark scripts: timing, peak memory, machine facts, datasets, JSON.

Every benchmark script is runnable alone (`python benchmarks/bench_X.py [--quick] [--json F]`);
`run_all.py` runs them one after another, each in a fresh process, and merges their JSON.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import pathlib
import platform
import resource
import statistics
import sys
import time

os.environ.setdefault("TQDM_DISABLE", "1")       # no progress bars inside the benchmark output

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Datasets the benchmarks generate once and reuse (data/synth-*/ is gitignored).
BENCH512 = ROOT / "data" / "synth-bench512"    # demo preset drawn at 512x1024: 3,000 train frames
BENCH_QUICK = ROOT / "data" / "synth-benchquick"  # mini preset at its native 128x256 (--quick)


def quiet_progress() -> None:
    """Silence the package's progress bars (lab4.progress, the switch LAB4_PROGRESS=0 also sets)."""
    from lab4.progress import set_progress
    set_progress(False)


# ---- timing --------------------------------------------------------------------------------
def median(xs):
    return float(statistics.median(xs)) if xs else float("nan")


def time_runs(fn, repeats: int, warmup: int = 1) -> list[float]:
    """Call fn() warmup times untimed, then `repeats` times; the wall times of the timed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


# ---- peak memory -----------------------------------------------------------------------------
def _clear_peak() -> bool:
    """Reset this process's peak RSS (Linux: writing 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakRSS:
    """Peak resident memory of this process over a `with` block, in MiB, from
    resource.getrusage(RUSAGE_SELF).ru_maxrss after resetting the kernel's high-water mark on
    entry (where the kernel refuses, the value is the process's peak so far: `cumulative`)."""

    def __enter__(self):
        self.reset = _clear_peak()
        return self

    def __exit__(self, *exc):
        self.mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return False

    def add(self, other: "PeakRSS") -> None:
        self.mib = max(getattr(self, "mib", 0.0), other.mib)


def children_peak_mib() -> float:
    """Largest peak RSS of any finished (waited-for) child process, in MiB."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def current_rss_mib() -> float:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


# ---- machine -------------------------------------------------------------------------------
def machine_info() -> dict:
    import numpy
    import PIL
    import torch
    try:
        import torchvision
        tv = torchvision.__version__
    except Exception as e:  # noqa: BLE001  (reported, never fatal)
        tv = f"unavailable ({type(e).__name__})"
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = float("nan")
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) / 2**20
    except OSError:
        pass
    flags = ""
    try:
        txt = open("/proc/cpuinfo").read()
        flags = " ".join(sorted({f for f in txt.split() if f.startswith(("avx512_bf16", "amx", "avx512f", "avx2"))}))
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(), "cpu_model": cpu, "cpu_flags": flags, "ram_gib": round(ram, 1),
        "python": platform.python_version(), "torch": torch.__version__, "torchvision": tv,
        "numpy": numpy.__version__, "pillow": PIL.__version__, "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
    }


def load_avg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def stamp() -> dict:
    """When and under what load a section was measured (stored with every section)."""
    return {"date": now(), "load_avg_1_5_15": load_avg()}


# ---- datasets ------------------------------------------------------------------------------
def _complete(path: pathlib.Path) -> dict | None:
    try:
        info = json.loads((path / "synth.json").read_text())
    except (OSError, ValueError):
        return None
    return info if info.get("complete") else None


def ensure_dataset(quick: bool, log=print) -> tuple[pathlib.Path, dict]:
    """The benchmark dataset, generated on first use with every core (then reused).
    Full: data/synth-bench512 = `generate_dataset(dir, "demo", height=512, width=1024)`:
    3,000 train frames, a 630-frame val video and 5 test sequences x 630 poses, all 512x1024.
    Quick: data/synth-benchquick = the mini preset (320 train frames) at 128x256."""
    from lab4.synth import generate_dataset
    path, preset, hw = (BENCH_QUICK, "mini", (128, 256)) if quick else (BENCH512, "demo", (512, 1024))
    info = _complete(path)
    if info and (info["height"], info["width"]) == hw:
        return path, {"path": str(path.relative_to(ROOT)), "preset": preset, "height": hw[0], "width": hw[1],
                      "n_train": info["n_train"], "generated_now": False,
                      "build_s": info.get("bench_build_s")}
    log(f"generating the benchmark dataset {path.relative_to(ROOT)} (preset {preset} at {hw[0]}x{hw[1]}, "
        f"{os.cpu_count()} workers; once, then reused) ...")
    t0 = time.perf_counter()
    generate_dataset(path, preset, seed=0, height=hw[0], width=hw[1], workers=os.cpu_count(), progress=False)
    dt = time.perf_counter() - t0
    info = json.loads((path / "synth.json").read_text())
    info["bench_build_s"] = round(dt, 1)
    (path / "synth.json").write_text(json.dumps(info, indent=2) + "\n")
    log(f"  generated in {dt:.0f} s")
    return path, {"path": str(path.relative_to(ROOT)), "preset": preset, "height": hw[0], "width": hw[1],
                  "n_train": info["n_train"], "generated_now": True, "build_s": round(dt, 1)}


# ---- output --------------------------------------------------------------------------------
def write_json(path, obj) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=_jsonable) + "\n")
    os.replace(tmp, path)


def _jsonable(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, pathlib.Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def ratio(ours: float, ref: float) -> float:
    """How many times better ours is (both as rates: higher is better)."""
    return ours / ref if ref else float("nan")


def fmt_s(s: float) -> str:
    if s != s:  # nan
        return "n/a"
    if s >= 100:
        return f"{s:.0f} s"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} us"


def add_common_args(ap) -> None:
    ap.add_argument("--quick", action="store_true", help="small sizes for development (not the real figures)")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON here")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's, = the cores)")


def apply_threads(n) -> None:
    if n:
        import torch
        torch.set_num_threads(n)
