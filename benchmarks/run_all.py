"""Run every benchmark and write benchmarks/results.json and benchmarks/RESULTS.md.

    python benchmarks/run_all.py                  # `make bench`: the default suite (< 15 min on 2 cores)
    python benchmarks/run_all.py --quick          # small sizes; writes runs/bench-quick/ instead
    python benchmarks/run_all.py --with-full-synth --with-compile --full-rollout   # the slow extras
    python benchmarks/run_all.py --only train     # re-run some sections, keep the others' results
    python benchmarks/run_all.py --report-only    # regenerate RESULTS.md from results.json
    python benchmarks/run_all.py --only quality   # `make bench-quality`: learning curves (~50-70 min, not in the default)

Each benchmark runs in its own process (so its peak memory is its own), one after another.
Sections not re-run keep their previous figures (each section records its own date and load).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, load_avg, machine_info, now, stamp, write_json  # noqa: E402
from report import render  # noqa: E402

HERE = ROOT / "benchmarks"
SECTIONS = ("synth", "loader", "train", "rollout", "gpu", "quality")
DEFAULT_SECTIONS = ("synth", "loader", "train", "rollout", "gpu")   # quality: only when asked for (long)


def run_script(args: list[str], log) -> tuple[int, float, str]:
    """Run a benchmark script, echo its output live; (returncode, wall seconds, output)."""
    cmd = [sys.executable, *args]
    log(f"$ {' '.join(os.path.relpath(c, ROOT) if c.startswith(str(ROOT)) else c for c in cmd[1:])}")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    out = []
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        out.append(line)
    proc.wait()
    return proc.returncode, time.perf_counter() - t0, "".join(out)


def run_json(script: str, extra: list[str], log) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_") as tmp:
        path = os.path.join(tmp, "out.json")
        rc, wall, out = run_script([str(HERE / script), *extra, "--json", path], log)
        if rc == 0 and os.path.exists(path):
            res = json.loads(open(path).read())
        else:
            res = {"error": f"exit code {rc}", "output_tail": out[-2000:]}
    res["wall_s"] = wall
    return res


def run_synth(preset: str, log) -> dict:
    """bench_synth.py (lab4-synth through generate_dataset, all cores), parsed; CPU use from
    the children's rusage shows whether every core was busy."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    rc, wall, out = run_script([str(HERE / "bench_synth.py"), "--preset", preset], log)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    res = {"section": f"synth_{preset}", **stamp(), "preset": preset, "wall_s": wall, "cpu_s": cpu,
           "cores": os.cpu_count(), "core_utilisation": cpu / (wall * (os.cpu_count() or 1)), "rc": rc}
    m = re.search(r"preset=(\S+) (\d+)x(\d+) workers=(\d+)", out)
    if m:
        res.update(height=int(m[2]), width=int(m[3]), workers=int(m[4]))
    m = re.search(r"total ([\d.]+) s\s+(\d+) frames/s \((\d+) frames, (\d+) PNGs, (\d+) MiB", out)
    if m:
        res.update(total_s=float(m[1]), frames_per_s=float(m[2]), frames=int(m[3]), pngs=int(m[4]), disk_mib=int(m[5]))
    m = re.search(r"peak RSS: main (\d+) MiB, largest worker (\d+) MiB", out)
    if m:
        res.update(peak_rss_mib=float(m[1]), peak_rss_worker_mib=float(m[2]))
    if rc != 0 or "total_s" not in res:
        res["error"] = f"exit code {rc}"
        res["output_tail"] = out[-2000:]
    if preset == "full":
        res["target_s"] = 600
        res["met"] = bool(rc == 0 and res.get("total_s", 1e9) <= 600 and res.get("workers") == os.cpu_count())
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (development); writes runs/bench-quick/")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--with-full-synth", action="store_true", help="also time `lab4-synth --preset full` (~6 min)")
    ap.add_argument("--with-compile", action="store_true", help="also try torch.compile in the training and rollout options")
    ap.add_argument("--full-rollout", action="store_true", help="also run ours over all 629 frames for real")
    ap.add_argument("--no-train-options", action="store_true", help="skip the training options sweep")
    ap.add_argument("--threads", type=int, help="torch intra-op threads for every benchmark (default: torch's)")
    ap.add_argument("--out-dir", help="where results.json and RESULTS.md go (default benchmarks/, "
                                      "or runs/bench-quick/ with --quick)")
    ap.add_argument("--report-only", action="store_true", help="only regenerate RESULTS.md from results.json")
    a = ap.parse_args(argv)
    out_dir = ROOT / (a.out_dir or ("runs/bench-quick" if a.quick else "benchmarks"))
    json_path, md_path = out_dir / "results.json", out_dir / "RESULTS.md"
    old = json.loads(json_path.read_text()) if json_path.exists() else {}
    if a.report_only:
        md_path.write_text(render(old))
        print(f"wrote {md_path.relative_to(ROOT)}")
        return 0
    only = set(a.only.split(",")) if a.only else set(DEFAULT_SECTIONS)
    if only - set(SECTIONS):
        ap.error(f"--only: unknown section(s) {sorted(only - set(SECTIONS))}; choose from {SECTIONS}")
    log = lambda s: print(s, flush=True)
    q = (["--quick"] if a.quick else []) + ([f"--threads={a.threads}"] if a.threads else [])
    results = {k: v for k, v in old.get("sections", {}).items()} if old.get("quick", False) == a.quick else {}
    load_before = load_avg()
    t_start = time.perf_counter()
    log(f"== lab4 benchmarks ({'quick' if a.quick else 'full'}), {now()}, load average {load_before} ==")

    if "synth" in only:
        log("\n== 4. synthetic data generation ==")
        results["synth_demo"] = run_synth("mini" if a.quick else "demo", log)
        if a.with_full_synth:
            results["synth_full"] = run_synth("full", log)
    if "loader" in only:
        log("\n== 1. loader ==")
        results["loader"] = run_json("bench_loader.py", q, log)
    if "train" in only:
        log("\n== 2. training step ==")
        results["train"] = run_json("bench_train.py", q + (["--with-compile"] if a.with_compile else [])
                                    + (["--no-options"] if a.no_train_options else []), log)
    if "rollout" in only:
        log("\n== 3. rollout ==")
        results["rollout"] = run_json("bench_rollout.py", q + (["--full"] if a.full_rollout else [])
                                      + (["--with-compile"] if a.with_compile else []), log)
    if "gpu" in only:
        log("\n== 5. GPU ==")
        results["gpu"] = run_json("bench_gpu.py", ["--quick"] if a.quick else [], log)
    if "quality" in only:
        log("\n== 6. quality: learning curves ==")
        results["quality"] = run_json("bench_quality.py", q, log)

    total = time.perf_counter() - t_start
    cmd = "python benchmarks/run_all.py" + ("" if argv is None and len(sys.argv) == 1 else " " + " ".join(argv if argv is not None else sys.argv[1:]))
    doc = {"quick": a.quick, "machine": machine_info(), "command": cmd.strip(),
           "last_run": {"date": now(), "sections": sorted(only), "wall_s": total,
                        "load_avg_before": load_before, "load_avg_after": load_avg()},
           "sections": results}
    write_json(json_path, doc)
    md_path.write_text(render(doc))
    log(f"\n== done in {total / 60:.1f} min; wrote {json_path.relative_to(ROOT)} and {md_path.relative_to(ROOT)} ==")
    for line in summary_lines(doc):
        log(line)
    return 0


def summary_lines(doc: dict) -> list[str]:
    from report import summary_rows
    rows = summary_rows(doc)
    return [f"  {r[0]:<60} ratio {r[3]:<8} target {r[4]:<18} {r[5]}" for r in rows]


if __name__ == "__main__":
    sys.exit(main())
