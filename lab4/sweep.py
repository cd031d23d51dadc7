"""lab4-sweep: the report's runs at once. The usual lab4-train flags, any of them with comma-separated
values; every combination is trained as an ordinary run folder under --save_root:

    lab4-sweep --DR data --save_root runs/report --preset demo --kl_anneal_type Cyclical,Monotonic,None
    lab4-sweep --DR data --save_root runs/report --preset demo --tfr 1.0,0

writes runs/report/kl_anneal_type=Cyclical/, .../kl_anneal_type=None/ (with two swept flags:
kl_anneal_type=None+tfr=0/), each the folder one lab4-train run would write (the notebooks and
lab4-test read them). Each run is its own lab4-train process, its output in <run>/train.log. On the
CPU the runs go one after another (each uses every core); with GPUs, --runs_per_gpu of them share
each GPU (a 32x64 model at batch 2 leaves a modern GPU mostly idle) and they spread over the GPUs
present. A failing run does not stop the others; the end lists every run's outcome (and
<save_root>/sweep.csv). The same command again skips the finished runs and resumes the interrupted
ones from their last.ckpt.
"""
from __future__ import annotations

import itertools
import os
import queue
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from .cli import build_parser, parse_config
from .errors import Lab4Error
from .files import write_text_atomic


PATH_FLAGS = ("--DR", "--save_root", "--ckpt_path", "--cache_dir")   # one value each: a comma is part of the path


def split_axes(argv: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """lab4-train arguments -> (the fixed ones, {flag: [values]} of those given comma-separated)."""
    takes_value = {opt: action.nargs != 0 for action in build_parser("lab4-train")._actions
                   for opt in action.option_strings}
    fixed, axes, i = [], {}, 0
    while i < len(argv):
        token = argv[i]
        flag, eq, value = token.partition("=")
        if flag.startswith("--") and takes_value.get(flag) and not eq:
            if i + 1 >= len(argv):
                raise Lab4Error(f"{flag}: expected a value")
            value, i = argv[i + 1], i + 1
        if flag.startswith("--") and takes_value.get(flag) and "," in value and flag not in PATH_FLAGS:
            axes[flag[2:]] = [v.strip() for v in value.split(",")]
        elif flag.startswith("--") and takes_value.get(flag):
            fixed += [flag, value]
        else:
            fixed.append(token)
        i += 1
    return fixed, axes


def combinations(axes: dict[str, list[str]]) -> list[dict[str, str]]:
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())] or [{}]


def run_name(combo: dict[str, str]) -> str:
    """kl_anneal_type=None+tfr=0; 'run' when nothing is swept."""
    return "+".join(f"{k}={v}" for k, v in combo.items()) or "run"


def plan(fixed: list[str], axes: dict[str, list[str]], save_root: Path) -> list[dict]:
    """One entry per combination: its folder, its lab4-train arguments, and what to do (train, resume,
    done). Every combination's flags are checked before anything runs (one line names the flag)."""
    runs = []
    for combo in combinations(axes):
        folder = save_root / run_name(combo)
        args = [*fixed, *itertools.chain.from_iterable((f"--{k}", v) for k, v in combo.items()),
                "--save_root", str(folder)]
        try:
            cfg, _, _ = parse_config(build_parser("lab4-train"), args)
        except SystemExit:
            raise Lab4Error(f"run {run_name(combo)}: lab4-train rejects its flags (see above)") from None
        last, metrics = folder / "last.ckpt", folder / "metrics.csv"
        epochs = len(pd.read_csv(metrics)) if metrics.is_file() and last.is_file() else 0
        if epochs >= cfg.num_epoch:
            action = "done"
        elif last.is_file():
            action, args = "resume", [*args, "--ckpt_path", str(last)]
        else:
            action = "train"
        runs.append({"run": run_name(combo), "folder": folder, "args": args, "action": action, "epochs": epochs,
                     "num_epoch": cfg.num_epoch, "device": cfg.device})
    return runs


def device_slots(device: str, runs_per_gpu: int) -> list[str | None]:
    """None: one CPU slot (the runs in turn); else one CUDA_VISIBLE_DEVICES value per concurrent run."""
    if device == "cpu":
        return [None]
    import torch
    n = torch.cuda.device_count()
    visible = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()] or [str(g) for g in range(n)]
    if device.startswith("cuda:"):
        return [visible[int(device.split(":", 1)[1])]] * runs_per_gpu
    return [g for g in visible[:n] for _ in range(runs_per_gpu)] or [None]


def run_one(run: dict, slot: str | None) -> int:
    """One lab4-train process; its stdout and stderr go to <run>/train.log."""
    run["folder"].mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    args = list(run["args"])
    if slot is not None:                          # this run sees one GPU, as cuda:0
        env["CUDA_VISIBLE_DEVICES"] = slot
        if run["device"].startswith("cuda:"):
            args = [a if a != run["device"] else "cuda" for a in args]
    with open(run["folder"] / "train.log", "a") as log:
        return subprocess.run([sys.executable, "-m", "lab4.train", *args], stdout=log, stderr=subprocess.STDOUT,
                              env=env).returncode


def outcome(run: dict) -> dict:
    metrics = run["folder"] / "metrics.csv"
    m = pd.read_csv(metrics) if metrics.is_file() else pd.DataFrame()
    best = m["val_psnr"].max() if "val_psnr" in m else float("nan")
    return {"run": run["run"], "status": run["status"], "epochs": len(m), "best_val_psnr": best,
            "folder": str(run["folder"])}


def sweep(argv: list[str], runs_per_gpu: int = 3, log=print) -> pd.DataFrame:
    fixed, axes = split_axes(argv)
    if "--save_root" not in fixed:
        raise Lab4Error("--save_root: required (the folder the sweep's runs go under)")
    save_root = Path(fixed[fixed.index("--save_root") + 1])
    del fixed[fixed.index("--save_root"):fixed.index("--save_root") + 2]
    runs = plan(fixed, axes, save_root)
    todo = [r for r in runs if r["action"] != "done"]
    slots = device_slots(runs[0]["device"], runs_per_gpu)
    log(f"lab4-sweep: {len(runs)} runs under {save_root} ({', '.join(f'{k}: {len(v)}' for k, v in axes.items()) or 'nothing swept'}); "
        f"{len(runs) - len(todo)} finished already; {len(slots)} at a time"
        + (f" on GPUs {','.join(sorted(set(slots)))}" if slots[0] is not None else " (CPU: in turn)"))
    for r in runs:
        r["status"] = "done (earlier)" if r["action"] == "done" else "not run"
    free = queue.Queue()
    for s in slots:
        free.put(s)

    def work(run):
        slot = free.get()
        try:
            log(f"  {run['action']:6s} {run['run']}" + (f" (GPU {slot})" if slot is not None else ""))
            rc = run_one(run, slot)
            run["status"] = "done" if rc == 0 else f"FAILED (exit {rc}, see {run['folder'] / 'train.log'})"
            log(f"  {run['status'].split(' (')[0]:6s} {run['run']}")
        finally:
            free.put(slot)

    pool = ThreadPoolExecutor(max_workers=len(slots))
    try:
        list(pool.map(work, todo))
    finally:                                      # Ctrl-C: the runs not started yet are not started
        pool.shutdown(wait=True, cancel_futures=True)
    table = pd.DataFrame([outcome(r) for r in runs])
    save_root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(save_root / "sweep.csv", table.to_csv(index=False))
    return table
