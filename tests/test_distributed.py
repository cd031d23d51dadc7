"""Data-parallel training through torchrun on the CPU (gloo): 2 processes train the run one process
trains at the same global batch (the loss trajectory and the weights agree to fp32 rounding), only
rank 0 writes, and a run resumes with another number of processes."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from lab4.checkpoint import load_model
from lab4.data import load_split
from lab4.evaluate import validate

FLAGS = ["--preset", "smoke", "--device", "cpu", "--batch_size", "2", "--steps_per_epoch", "3",
         "--train_vi_len", "8", "--val_vi_len", "8", "--num_workers", "1", "--channels_last", "--tfr", "0.5"]   # channels_last: the default's noise layout


def lab4_train(args, nproc: int = 1, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    if nproc == 1:
        cmd = [sys.executable, "-m", "lab4.train", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "lab4.train", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def weights(path):
    return torch.load(path, weights_only=True)["train_state_dict"]


@pytest.fixture(scope="module")
def one_and_two(mini_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    lab4_train(["--DR", str(mini_data), "--save_root", str(root / "one"), "--num_epoch", "2", *FLAGS])
    two = lab4_train(["--DR", str(mini_data), "--save_root", str(root / "two"), "--num_epoch", "2", *FLAGS], nproc=2)
    return root, two


@pytest.mark.slow
def test_two_processes_train_what_one_process_trains(one_and_two):
    root, _ = one_and_two
    one, two = pd.read_csv(root / "one" / "metrics.csv"), pd.read_csv(root / "two" / "metrics.csv")
    assert len(one) == len(two) == 2
    # fp32 rounding differs (sums over ranks): Adam turns it into lr-sized steps of the parameters whose
    # gradient is ~0 (the conv bias before the BatchNorm), so the runs agree to ~1e-4, not bit for bit;
    # BatchNorm statistics or noise per rank instead of the whole batch's would differ by percents
    np.testing.assert_allclose(two["loss"].iloc[0], one["loss"].iloc[0], rtol=1e-5)
    for col in ("loss", "mse", "kl", "teacher_forced", "steps"):
        np.testing.assert_allclose(two[col], one[col], rtol=1e-3, atol=1e-6, err_msg=col)
    a, b = weights(root / "one" / "last.ckpt"), weights(root / "two" / "last.ckpt")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k].float(), a[k].float(), rtol=1e-3, atol=2e-3, msg=k)
    assert json.loads((root / "two" / "config.json").read_text())["world_size"] == 2
    assert json.loads((root / "one" / "config.json").read_text())["world_size"] == 1


def test_only_rank_zero_writes(one_and_two):
    root, proc = one_and_two
    names = lambda d: sorted(p.relative_to(d).as_posix() for p in d.rglob("*"))   # noqa: E731
    assert names(root / "two") == names(root / "one")
    out = proc.stdout
    assert out.count("lab4-train: cpu, precision fp32 (auto)") == 1 and "2 processes of 1 sequences each" in out
    assert out.count("epoch   1/2") == 1


@pytest.mark.slow
def test_resume_with_another_number_of_processes(one_and_two, mini_data):
    root, _ = one_and_two
    half = root / "half"
    lab4_train(["--DR", str(mini_data), "--save_root", str(half), "--num_epoch", "1", *FLAGS], nproc=2)
    lab4_train(["--DR", str(mini_data), "--save_root", str(half), "--num_epoch", "2", "--ckpt_path",
                str(half / "last.ckpt"), *FLAGS])                               # one process goes on
    done, one = pd.read_csv(half / "metrics.csv"), pd.read_csv(root / "one" / "metrics.csv")
    np.testing.assert_allclose(done["loss"], one["loss"], rtol=1e-3)   # as above: rounding, amplified by Adam
    model, cfg, _ = load_model(half / "last.ckpt")                     # lab4-test's loader takes it
    pred, psnr = validate(model, load_split(mini_data, "val"), length=8)
    assert cfg.world_size == 1 and pred.shape == (8, 3, 32, 64) and np.isfinite(psnr[1:]).all()


@pytest.mark.slow
def test_the_global_batch_must_divide(mini_data, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lab4.train",
           "--DR", str(mini_data), "--save_root", str(tmp_path / "x"), *FLAGS[:-2], "--batch_size", "3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode != 0
    assert "--batch_size 3: the global batch must divide among the 2 processes" in proc.stderr + proc.stdout
