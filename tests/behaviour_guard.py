"""The behaviour guard of a refactor: one fixed-seed smoke run through the command lines, reduced
to what must not change when code only moves (tests/test_behaviour_guard.py compares it with the
fingerprint recorded before the move, tests/data/behaviour_guard.json).

    python tests/behaviour_guard.py --record      # write the fingerprint of the code as it is now

The run: lab4-synth --preset mini --seed 0; lab4-train --preset smoke --seed 1 on the CPU; lab4-test
--val on its last.ckpt. The fingerprint: metrics.csv without its wall-clock column, the sha256 of
submission.csv and of val/psnr_per_frame.csv, and every key of last.ckpt (top level, config,
state_dict, optimizer state). One thread (OMP_NUM_THREADS=1), so the float sums run in one order.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

FINGERPRINT = Path(__file__).parent / "data" / "behaviour_guard.json"
TRAIN_FLAGS = ["--preset", "smoke", "--seed", "1", "--device", "cpu", "--num_epoch", "2", "--steps_per_epoch", "3",
               "--val_vi_len", "24", "--train_vi_len", "8"]


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)      # the console script of the environment running this


def _run(*argv: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", LAB4_PROGRESS="0", MPLBACKEND="Agg")
    env.pop("LAB4_SMOKE", None)
    done = subprocess.run(list(argv), env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprint(work: Path, data: Path | None = None) -> dict:
    """Run the guard's commands under `work` (data generated there unless `data` is given)."""
    import pandas as pd
    import torch
    if data is None:
        data = work / "data"
        _run(_tool("lab4-synth"), "--out", str(data), "--preset", "mini", "--seed", "0")
    run = work / "run"
    _run(_tool("lab4-train"), "--DR", str(data), "--save_root", str(run), *TRAIN_FLAGS)
    _run(_tool("lab4-test"), "--DR", str(data), "--save_root", str(run), "--ckpt_path", str(run / "last.ckpt"),
         "--val", "--val_vi_len", "24", "--device", "cpu")
    metrics = pd.read_csv(run / "metrics.csv").drop(columns=["time_s"])
    ckpt = torch.load(run / "last.ckpt", weights_only=True)
    return {"metrics_csv": metrics.to_csv(index=False),
            "submission_sha256": _sha256(run / "submission.csv"),
            "val_psnr_csv_sha256": _sha256(run / "val" / "psnr_per_frame.csv"),
            "checkpoint_keys": sorted(ckpt),
            "config_keys": sorted(ckpt["config"]),
            "state_dict_keys": sorted(ckpt["state_dict"]),
            "optimizer_state_len": len(ckpt["optimizer"]["state"]),
            "machine": machine()}


def machine() -> dict:
    """What the float results depend on besides the code: torch and the CPU's vector instructions."""
    import torch
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.machine()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", action="store_true", help=f"write {FINGERPRINT.name}")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        fp = fingerprint(Path(tmp))
    text = json.dumps(fp, indent=1)
    if args.record:
        FINGERPRINT.parent.mkdir(exist_ok=True)
        FINGERPRINT.write_text(text + "\n")
        print(f"wrote {FINGERPRINT}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
