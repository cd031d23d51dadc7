"""Fault injection (issue 8): training killed or interrupted at random moments, a disk that fills,
NaN in gradients, weights and rollouts, and the bad values that used to pass. Each test fails on
the code before the fix: nothing already written is lost, nothing wrong is written silently."""
import argparse
import errno
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

import lab4.infer as infer_mod
import lab4.train as train_mod
from lab4.checkpoint import load_model, read_checkpoint
from lab4.device import select_device
from lab4.errors import Lab4Error
from lab4.cli import test_main as lab4_test
from lab4.cli import train_main as lab4_train
from lab4.interrupt import TrainingInterrupted
from lab4.model import VideoCVAE
from lab4.train import train

QUIET = dict(progress=False, log=lambda *a: None)
# a CLI run long enough to interrupt: 6 epochs of 4 tiny steps, each epoch validated and saved
# ~2 s an epoch here: after the first epoch's line, two more epochs (~4 s) outlast the tests' random
# moments (< 1 s), so every kill and Ctrl-C lands while training runs.
CLI_RUN = ["--preset", "smoke", "--device", "cpu", "--num_epoch", "3", "--steps_per_epoch", "4",
           "--train_vi_len", "6", "--val_vi_len", "6", "--num_workers", "1"]
EPOCHS = 3


def files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def one_line_error(capsys, prog, *expected):
    err = capsys.readouterr().err
    assert f"{prog}: error: " in err, err
    message = err[err.index(f"{prog}: error: "):]
    assert message.count("\n") == 1, message
    for text in expected:
        assert str(text) in message, (text, message)
    return message


def assert_whole_run(save_root, mini_data):
    """Whatever the interruption left, last.ckpt (if any) is a whole checkpoint, and resuming it
    (or starting again when there is none) completes with every epoch in metrics.csv once."""
    last = save_root / "last.ckpt"
    argv = ["--DR", str(mini_data), "--save_root", str(save_root), *CLI_RUN]
    if last.exists():
        ckpt = read_checkpoint(last)                        # a whole file that loads (weights_only)
        assert ckpt["format"] == "lab4" and 0 <= ckpt["epoch"] <= EPOCHS
        argv += ["--ckpt_path", str(last)]
    assert lab4_train(argv) == 0
    metrics = pd.read_csv(save_root / "metrics.csv")
    assert metrics["epoch"].tolist() == list(range(1, EPOCHS + 1))
    assert torch.load(last, weights_only=True)["epoch"] == EPOCHS


def start_cli_run(save_root, mini_data):
    """lab4-train in a process of its own; returns it once the first epoch's log line is out."""
    proc = subprocess.Popen([sys.executable, "-u", "-m", "lab4.train", "--DR", str(mini_data),
                             "--save_root", str(save_root), *CLI_RUN],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    for line in proc.stdout:                                # training is under way from here
        if line.startswith("epoch"):
            break
    return proc


# ---- killed and interrupted at random moments (real processes, real signals) ---------------------
@pytest.mark.parametrize("trial", range(2))
@pytest.mark.slow
def test_kill_9_at_a_random_moment_leaves_a_whole_checkpoint(mini_data, tmp_path, trial):
    proc = start_cli_run(tmp_path, mini_data)
    time.sleep(random.Random(trial).uniform(0.0, 1.0))       # within the remaining epochs
    assert proc.poll() is None, "the run ended before the kill: lengthen CLI_RUN"
    proc.kill()                                               # SIGKILL: no handler runs
    proc.communicate()
    assert_whole_run(tmp_path, mini_data)


@pytest.mark.parametrize("presses,trial", [(1, 0), (2, 0), (2, 1)])
@pytest.mark.slow
def test_ctrl_c_once_or_twice_at_a_random_moment(mini_data, tmp_path, presses, trial):
    proc = start_cli_run(tmp_path, mini_data)
    rng = random.Random(10 * presses + trial)
    time.sleep(rng.uniform(0.0, 0.8))
    assert proc.poll() is None, "the run ended before the press: lengthen CLI_RUN"
    for _ in range(presses):
        proc.send_signal(signal.SIGINT)
        time.sleep(rng.uniform(0.0, 0.05))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err                        # interrupted, not finished or crashed
    assert "Traceback" not in err and f"saved {tmp_path / 'last.ckpt'}" in err, err
    assert_whole_run(tmp_path, mini_data)


@pytest.mark.slow
def test_killed_while_writing_a_checkpoint(mini_data, tmp_path):
    """SIGKILL half-way through writing last.ckpt (its third write, epoch 3's): the file on disk
    is the previous whole one, and resume completes."""
    script = ("import os, signal, sys, torch\n"
              "real, calls = torch.save, []\n"
              "def save(obj, f, *a, **k):\n"
              "    calls.append(os.path.basename(f).startswith('last.'))\n"
              "    real(obj, f, *a, **k)\n"
              "    if sum(calls) == 3 and calls[-1]:\n"
              "        os.truncate(f, os.path.getsize(f) // 2)\n"
              "        os.kill(os.getpid(), signal.SIGKILL)\n"
              "torch.save = save\n"
              "from lab4.cli import train_main as main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, "-c", script, "--DR", str(mini_data), "--save_root", str(tmp_path),
                           *CLI_RUN, "--per_save", "100"], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert read_checkpoint(tmp_path / "last.ckpt")["epoch"] == 2     # writes 1, 2 whole; the 3rd torn
    assert_whole_run(tmp_path, mini_data)


# ---- Ctrl-C in-process: the second press inside a step, and before training ----------------------
RESUME = dict(num_epoch=3, steps_per_epoch=2, train_vi_len=4, val_vi_len=3, tfr=0.5, seed=7,
              kl_anneal_cycle=1, kl_beta_min=0.1)


@pytest.mark.slow
def test_second_ctrl_c_inside_the_optimizer_step_keeps_the_step_whole(mini_data, tmp_path, smoke_config,
                                                                    ctrl_c_at_optimizer_step):
    """Two quick presses while optimizer.step() runs: the step completes, last.ckpt says 'after
    it', and resuming gives exactly the uninterrupted run (before: the step was applied twice)."""
    reference = tmp_path / "reference"
    train(smoke_config(mini_data, reference, **RESUME), **QUIET)
    run = tmp_path / "run"
    ctrl_c_at_optimizer_step.arm(3, presses=2)   # epoch 2, step 1: press, press, before the step is counted
    with pytest.raises(TrainingInterrupted):
        train(smoke_config(mini_data, run, **RESUME), **QUIET)
    ckpt = torch.load(run / "last.ckpt", weights_only=True)
    assert (ckpt["epoch"], ckpt["batch_in_epoch"]) == (1, 1)
    ctrl_c_at_optimizer_step.disarm()
    train(smoke_config(mini_data, run, **RESUME, ckpt_path=str(run / "last.ckpt")), **QUIET)
    cols = ["epoch", "loss", "mse", "kl"]
    pd.testing.assert_frame_equal(pd.read_csv(reference / "metrics.csv")[cols],
                                  pd.read_csv(run / "metrics.csv")[cols], rtol=0, atol=1e-6)
    a, b = (torch.load(r / "last.ckpt", weights_only=True)["state_dict"] for r in (reference, run))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)


def test_ctrl_c_during_the_cache_build_says_nothing_was_saved(mini_data, tmp_path, capsys, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(train_mod, "load_split", interrupted)
    assert lab4_train(["--DR", str(mini_data), "--save_root", str(tmp_path), *CLI_RUN]) == 130
    err = capsys.readouterr().err
    assert "nothing saved" in err and "saved " not in err.replace("nothing saved", "")
    assert not (tmp_path / "last.ckpt").exists()


# ---- a disk that fills ----------------------------------------------------------------------------
@pytest.mark.slow
def test_a_checkpoint_write_that_fails_is_one_line_and_the_old_file_stays(mini_data, tmp_path, capsys,
                                                                         monkeypatch):
    real, calls = torch.save, []

    def save(obj, f, *a, **k):
        calls.append(os.path.basename(f).startswith("last."))
        if sum(calls) == 2 and calls[-1]:                    # epoch 2's last.ckpt: the disk is full
            with open(f, "wb") as fh:
                fh.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(obj, f, *a, **k)

    argv = ["--DR", str(mini_data), "--save_root", str(tmp_path), *CLI_RUN, "--per_save", "100"]
    monkeypatch.setattr(torch, "save", save)
    assert lab4_train(argv) == 2
    one_line_error(capsys, "lab4-train", tmp_path / "last.ckpt", "No space left on device", "is as it was")
    assert read_checkpoint(tmp_path / "last.ckpt")["epoch"] == 1
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


# ---- NaN --------------------------------------------------------------------------------------------
def test_nan_gradients_with_a_finite_loss_stop_before_the_weights_change(mini_data, tmp_path, smoke_config):
    snapshot = {}

    def poison(epoch, k, loss, model):
        if (epoch, k) == (1, 0):                     # from epoch 2's second step on, NaN gradients
            snapshot["last"] = (tmp_path / "last.ckpt").read_bytes()
            model.Generator[-1].weight.register_hook(lambda g: g * math.nan)

    cfg = smoke_config(mini_data, tmp_path, num_epoch=3, steps_per_epoch=2, train_vi_len=4, val_vi_len=3)
    with pytest.raises(Lab4Error, match="gradient norm is nan.*epoch 2 step 2.*last good"):
        train(cfg, on_step=poison, **QUIET)
    assert (tmp_path / "last.ckpt").read_bytes() == snapshot["last"]
    sd = torch.load(tmp_path / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())
    assert pd.read_csv(tmp_path / "metrics.csv")["epoch"].tolist() == [1]


def test_lab4_test_refuses_a_checkpoint_with_nan_weights(mini_data, smoke_run, tmp_path, capsys):
    ckpt = torch.load(smoke_run / "last.ckpt", weights_only=True)
    ckpt["state_dict"]["Generator.7.bias"][0] = math.nan
    bad = tmp_path / "nan.ckpt"
    torch.save(ckpt, bad)
    out = tmp_path / "out"
    out.mkdir()
    (out / "submission.csv").write_text("an earlier submission")
    assert lab4_test(["--DR", str(mini_data), "--save_root", str(out), "--device", "cpu",
                      "--ckpt_path", str(bad)]) == 2
    one_line_error(capsys, "lab4-test", bad, "NaN or infinite", "Generator.7.bias")
    assert (out / "submission.csv").read_text() == "an earlier submission"


def test_a_rollout_that_goes_nan_writes_no_submission(mini_data, smoke_run, tmp_path, capsys, monkeypatch):
    def diverging(model, test, **k):                 # an unbounded model blowing up in sequence 3
        pred = torch.rand(len(test.images), 630, 3, 32, 64)
        pred[3, 200:] = math.inf
        pred[3, 250, 0, 0, 0] = math.nan
        return pred

    monkeypatch.setattr(infer_mod, "predict_test", diverging)
    out = tmp_path / "out"
    out.mkdir()
    (out / "submission.csv").write_text("an earlier submission")
    assert lab4_test(["--DR", str(mini_data), "--save_root", str(out), "--device", "cpu",
                      "--ckpt_path", str(smoke_run / "last.ckpt")]) == 2
    one_line_error(capsys, "lab4-test", "test sequence 3", "from frame 200")
    assert (out / "submission.csv").read_text() == "an earlier submission"
    assert not list(out.glob("pred_seq*.gif"))


@pytest.mark.parametrize("main,prog,flag", [(lab4_train, "lab4-train", "--test"), (lab4_test, "lab4-test", "--val")])
def test_a_val_rollout_that_goes_nan_is_one_line_from_both_tools(main, prog, flag, mini_data, smoke_run, tmp_path,
                                                                 capsys, monkeypatch):
    """`lab4-train --test` and `lab4-test --val` share one evaluation path, guarded alike: a rollout
    that diverges is refused in one line and no val output is written."""
    real_rollout = VideoCVAE.rollout

    def diverging(self, *a, **k):                    # the val video blows up from frame 5
        pred = real_rollout(self, *a, **k).clone()
        pred[:, 5:] = math.inf
        return pred

    monkeypatch.setattr(VideoCVAE, "rollout", diverging)
    out = tmp_path / "out"
    assert main(["--DR", str(mini_data), "--save_root", str(out), "--device", "cpu", flag, "--val_vi_len", "12",
                 "--ckpt_path", str(smoke_run / "last.ckpt")]) == 2
    one_line_error(capsys, prog, "the val video", "from frame 5", "nothing written")
    assert not (out / "val").exists() or not any((out / "val").iterdir())
    assert not (out / "submission.csv").exists()


# ---- values that used to pass the checks ------------------------------------------------------------
@pytest.mark.parametrize("flag,value,expected", [
    ("--val_vi_len", "1", "at least 2"), ("--lr", "0", "positive"), ("--lr=-0.5", None, "positive"),
    ("--tfr", "1.5", "[0, 1]"), ("--tfr", "-0.1", "[0, 1]"), ("--tfr_d_step", "-0.1", ">= 0"),
    ("--grad_clip", "0", "positive"), ("--F_dim", "12", "multiple of 8"), ("--D_out_dim", "20", "multiple of 8"),
    ("--L_dim", "6", "multiple of 4"), ("--N_dim", "3", "multiple of 4")])
def test_bad_values_are_refused_before_anything_is_written(mini_data, tmp_path, capsys, flag, value, expected):
    given = [flag] if value is None else [flag, value]
    argv = ["--DR", str(mini_data), "--save_root", str(tmp_path / "run"), *CLI_RUN, *given]
    assert lab4_train(argv) == 2
    one_line_error(capsys, "lab4-train", " ".join(given).replace("=", " "), expected)
    assert not (tmp_path / "run").exists()


def test_device_index_beyond_the_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(Lab4Error, match=r"--device cuda:7: this machine has 1 GPU \(cuda:0\)"):
        select_device("cuda:7")
    assert select_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(Lab4Error, match="--device 'tpu'"):
        select_device("tpu")


def test_cuda_out_of_memory_is_one_line_naming_batch_size(mini_data, tmp_path, capsys, monkeypatch):
    def out_of_memory(self):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    monkeypatch.setattr(train_mod.Run, "fit", out_of_memory)
    assert lab4_train(["--DR", str(mini_data), "--save_root", str(tmp_path), *CLI_RUN, "--batch_size", "2"]) == 2
    one_line_error(capsys, "lab4-train", "out of memory", "--batch_size 2", "lower --batch_size")


# ---- --overwrite and resume flags -----------------------------------------------------------------
@pytest.mark.slow
def test_overwrite_moves_the_old_run_aside_before_writing(mini_data, smoke_run, tmp_path, capsys):
    root = tmp_path / "runs"
    shutil.copytree(smoke_run, root)
    (root / "epoch=9.ckpt").write_bytes((root / "last.ckpt").read_bytes())
    old = files(root)
    argv = ["--DR", str(mini_data), "--save_root", str(root), *CLI_RUN, "--num_epoch", "1",
            "--per_save", "100", "--overwrite"]
    assert lab4_train(argv) == 0
    assert "moved the previous run" in capsys.readouterr().out
    aside = [p for p in root.iterdir() if p.name.startswith("previous-")]
    assert len(aside) == 1 and files(aside[0]) == old                 # the old run, whole, beside
    assert not (root / "epoch=9.ckpt").exists()                       # nothing old at the top
    assert torch.load(root / "best.ckpt", weights_only=True)["epoch"] == 1
    assert pd.read_csv(root / "metrics.csv")["epoch"].tolist() == [1]


@pytest.mark.slow
def test_resume_applies_a_new_weight_decay(mini_data, tmp_path, capsys):
    base = ["--DR", str(mini_data), "--save_root", str(tmp_path), "--device", "cpu"]
    assert lab4_train(base + CLI_RUN + ["--num_epoch", "1", "--optim", "AdamW", "--weight_decay", "0"]) == 0
    capsys.readouterr()
    assert lab4_train(base + ["--ckpt_path", str(tmp_path / "last.ckpt"), "--num_epoch", "2",
                              "--weight_decay", "0.05"]) == 0
    assert "weight_decay 0.0 in the checkpoint's optimizer -> 0.05" in capsys.readouterr().out
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert [g["weight_decay"] for g in ckpt["optimizer"]["param_groups"]] == [0.05]
    assert ckpt["config"]["weight_decay"] == 0.05


# ---- checkpoints from students' own trainers --------------------------------------------------------
def test_a_checkpoint_with_argparse_args_inside_loads(mini_data, smoke_run, tmp_path, capsys):
    sd = torch.load(smoke_run / "last.ckpt", weights_only=True)["state_dict"]
    student = tmp_path / "student.ckpt"
    torch.save({"state_dict": sd, "args": argparse.Namespace(lr=1e-3, batch_size=2), "last_epoch": 3}, student)
    model, cfg, ckpt = load_model(student)
    assert cfg.preset == "template" and isinstance(ckpt["args"], argparse.Namespace) and ckpt["args"].lr == 1e-3
    torch.testing.assert_close(model.state_dict()["Generator.7.bias"], sd["Generator.7.bias"])


def test_a_checkpoint_with_other_pickled_classes_names_them(mini_data, smoke_run, tmp_path, capsys):
    sd = torch.load(smoke_run / "last.ckpt", weights_only=True)["state_dict"]
    student = tmp_path / "student.ckpt"
    torch.save({"state_dict": sd, "psnr_history": np.array([20.0, 21.5])}, student)
    assert lab4_test(["--DR", str(mini_data), "--save_root", str(tmp_path / "out"), "--device", "cpu",
                      "--ckpt_path", str(student)]) == 2
    one_line_error(capsys, "lab4-test", student, "numpy", "weights_only=False", "plain types")
