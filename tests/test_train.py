"""Training on the mini synthetic data with the smoke preset: outputs, checkpoints, exact resume,
divergence, and the lab4-test / lab4-train command lines."""
import math
import signal

import numpy as np
import pandas as pd
import pytest
import torch

import lab4.model as model_mod
import lab4.train as train_mod
from lab4.config import CHECKPOINT_VERSION, smoke_mode
from lab4.data import load_split
from lab4.errors import Lab4Error
from lab4.cli import test_main as lab4_test
from lab4.model import VideoCVAE
from lab4.schedules import teacher_forcing_coin
from lab4.score import read_submission
from lab4.cli import train_main as lab4_train
from lab4.train import train
from lab4.workbook import train_or_load

QUIET = dict(progress=False, log=lambda *a: None)
COLUMNS = ["epoch", "loss", "mse", "kl", "beta", "tfr", "lr", "val_psnr"]


# ---- a finished smoke run --------------------------------------------------------------------
def test_metrics_csv_has_one_row_per_epoch(smoke_run):
    m = pd.read_csv(smoke_run / "metrics.csv")
    assert set(COLUMNS) <= set(m.columns)
    assert m["epoch"].tolist() == [1, 2] and m["steps"].tolist() == [3, 3]
    assert np.isfinite(m[COLUMNS].to_numpy(float)).all()
    np.testing.assert_allclose(m["loss"], m["mse"] + m["beta"] * m["kl"], rtol=1e-5)
    assert np.isfinite(m["copy_first_psnr"]).all() and m["copy_first_psnr"].nunique() == 1   # computed once


def test_outputs_of_a_run(smoke_run):
    names = {p.name for p in smoke_run.iterdir()}
    assert {"config.json", "metrics.csv", "last.ckpt", "best.ckpt", "epoch=1.ckpt", "epoch=2.ckpt",
            "loss_curves.png"} <= names
    assert (smoke_run / "val" / "psnr_per_frame.csv").is_file()


@pytest.mark.parametrize("name", ["last.ckpt", "best.ckpt", "epoch=1.ckpt", "epoch=2.ckpt"])
def test_checkpoints_load_with_weights_only(smoke_run, name):
    ckpt = torch.load(smoke_run / name, weights_only=True)
    assert {"version", "config", "state_dict", "optimizer", "rng", "epoch", "lr", "tfr", "last_epoch"} <= set(ckpt)
    assert ckpt["version"] == CHECKPOINT_VERSION                 # what load_model's version checks read
    assert ckpt["config"]["F_dim"] == 16 and ckpt["config"]["preset"] == "smoke"
    assert ckpt["optimizer"]["state"]                   # Adam moments are saved
    if name.startswith("epoch="):
        assert ckpt["epoch"] == int(name[len("epoch="):-len(".ckpt")])


def test_last_checkpoint_is_the_final_epoch(smoke_run):
    last = torch.load(smoke_run / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2 and last["batch_in_epoch"] == 0


def test_atomic_writes_leave_no_temp_files(smoke_run):
    assert not [p for p in smoke_run.rglob("*") if ".tmp" in p.name]


# ---- exact resume ----------------------------------------------------------------------------
# beta 0.1, 0.5, 1 (one ramp, floored), a coin per batch: every epoch differs and draws random numbers
RESUME = dict(num_epoch=3, steps_per_epoch=2, train_vi_len=4, val_vi_len=3, tfr=0.5, seed=7,
              kl_anneal_cycle=1, kl_beta_min=0.1)


def losses(save_root):
    return pd.read_csv(save_root / "metrics.csv")[["epoch", "loss", "mse", "kl", "teacher_forced"]]


def final_weights(save_root):
    return torch.load(save_root / "last.ckpt", weights_only=True)["state_dict"]


def assert_same_run(a, b):
    assert losses(a)["loss"].nunique() == 3
    pd.testing.assert_frame_equal(losses(a), losses(b), rtol=0, atol=1e-6)
    wa, wb = final_weights(a), final_weights(b)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-6, rtol=0, msg=k)


@pytest.fixture(scope="module")
def reference(mini_data, tmp_path_factory, smoke_config):
    """An uninterrupted 3-epoch run."""
    root = tmp_path_factory.mktemp("reference")
    train(smoke_config(mini_data, root, **RESUME), **QUIET)
    assert len(losses(root)) == 3
    return root


@pytest.mark.slow
def test_resume_after_an_epoch_is_exact(reference, mini_data, tmp_path, smoke_config):
    train(smoke_config(mini_data, tmp_path, **{**RESUME, "num_epoch": 1}), **QUIET)
    assert len(losses(tmp_path)) == 1
    cfg = smoke_config(mini_data, tmp_path, **RESUME, ckpt_path=str(tmp_path / "last.ckpt"))
    train(cfg, **QUIET)
    assert_same_run(reference, tmp_path)


@pytest.mark.slow
def test_resume_after_ctrl_c_mid_epoch_is_exact(reference, mini_data, tmp_path, smoke_config):
    def interrupt(epoch, step, loss, model):
        if (epoch, step) == (1, 0):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(smoke_config(mini_data, tmp_path, **RESUME), on_step=interrupt, **QUIET)
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert (ckpt["epoch"], ckpt["batch_in_epoch"]) == (1, 1)
    train(smoke_config(mini_data, tmp_path, **RESUME, ckpt_path=str(tmp_path / "last.ckpt")), **QUIET)
    assert_same_run(reference, tmp_path)


@pytest.mark.slow
def test_resume_after_ctrl_c_right_after_the_optimizer_step_is_exact(reference, mini_data, tmp_path,
                                                                     smoke_config, ctrl_c_at_optimizer_step):
    ctrl_c_at_optimizer_step.arm(3)              # epoch 1, step 0: the user presses Ctrl-C now
    with pytest.raises(KeyboardInterrupt):
        train(smoke_config(mini_data, tmp_path, **RESUME), **QUIET)
    ctrl_c_at_optimizer_step.disarm()
    train(smoke_config(mini_data, tmp_path, **RESUME, ckpt_path=str(tmp_path / "last.ckpt")), **QUIET)
    assert_same_run(reference, tmp_path)


@pytest.mark.slow
def test_epoch_coin_forces_whole_epochs(mini_data, tmp_path, smoke_config):
    cfg = smoke_config(mini_data, tmp_path, **{**RESUME, "tf_coin": "epoch"})
    metrics = train(cfg, **QUIET)["metrics"]
    expected = [float(teacher_forcing_coin(cfg, e, 0.0)) for e in range(3)]
    assert metrics["teacher_forced"].tolist() == expected


def test_train_or_load_reuses_a_finished_run(smoke_run, mini_data, smoke_config, monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(train_mod, "train", no_training)
    done = train_or_load(smoke_config(mini_data, smoke_run), progress=False)
    assert done["epoch"].tolist() == [1, 2]
    with pytest.raises(AssertionError, match="trained again"):          # another config: trains
        train_or_load(smoke_config(mini_data, smoke_run, num_epoch=3), progress=False)
    with pytest.raises(AssertionError, match="trained again"):
        train_or_load(smoke_config(mini_data, smoke_run), reuse=False, progress=False)


@pytest.mark.slow
def test_continue_from_a_template_checkpoint(mini_data, tmp_path, smoke_config):
    torch.manual_seed(0)
    sd = VideoCVAE(F_dim=16, L_dim=8, N_dim=4, D_out_dim=24).state_dict()
    path = tmp_path / "epoch=2.ckpt"             # the template stores the model's state_dict as "optimizer"
    torch.save({"state_dict": sd, "optimizer": sd, "lr": 1e-4, "tfr": 1.0, "last_epoch": 2}, path)
    logs = []
    cfg = smoke_config(mini_data, tmp_path / "run", num_epoch=3, steps_per_epoch=1, train_vi_len=4,
                       val_vi_len=4, ckpt_path=str(path))
    train(cfg, progress=False, log=logs.append)
    assert pd.read_csv(tmp_path / "run" / "metrics.csv")["epoch"].tolist() == [3]
    assert any("optimizer state not restored" in line for line in logs)


# ---- divergence --------------------------------------------------------------------------------
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(mini_data, tmp_path, smoke_config, monkeypatch):
    real_loss, calls, snapshot = train_mod.cvae_loss, [], {}

    def loss_nan_in_epoch_2(*a, **k):
        calls.append(1)
        loss, mse, kl = real_loss(*a, **k)
        if len(calls) == 3:                      # first step of epoch 2 (2 steps per epoch)
            snapshot["last"] = (tmp_path / "last.ckpt").read_bytes()
            return loss * math.nan, mse, kl
        return loss, mse, kl

    monkeypatch.setattr(train_mod, "cvae_loss", loss_nan_in_epoch_2)
    cfg = smoke_config(mini_data, tmp_path, num_epoch=3, steps_per_epoch=2, train_vi_len=6, val_vi_len=4,
                       kl_anneal_type="None")
    handler_before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Lab4Error, match="diverged.*epoch 2 step 1"):
        train(cfg, **QUIET)
    assert (tmp_path / "last.ckpt").read_bytes() == snapshot["last"]
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["epoch"] == 1
    assert pd.read_csv(tmp_path / "metrics.csv")["epoch"].tolist() == [1]
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    assert signal.getsignal(signal.SIGINT) is handler_before   # Ctrl-C works again after the error


@pytest.mark.slow
def test_cpu_amp_trains_in_bfloat16_and_stays_close_to_fp32(mini_data, tmp_path, smoke_config, monkeypatch):
    """--cpu_amp: the forward runs under CPU bf16 autocast (seen in the dtype of the posterior's mu the
    loss receives; the frame itself is float32 once the float32 colour anchor is added),
    training still learns, and the rollout differs from the fp32 one only by bf16 rounding."""
    from lab4.infer import predict_test
    seen = []
    real_loss = train_mod.cvae_loss
    monkeypatch.setattr(train_mod, "cvae_loss", lambda x_hat, x, mu, *a, **k: seen.append(mu.dtype) or real_loss(x_hat, x, mu, *a, **k))
    m = train(smoke_config(mini_data, tmp_path / "amp", cpu_amp=True, num_epoch=1, steps_per_epoch=1), **QUIET)["metrics"]
    assert set(seen) == {torch.bfloat16} and np.isfinite(m["loss"]).all()
    seen.clear()
    train(smoke_config(mini_data, tmp_path / "fp32", num_epoch=1, steps_per_epoch=1), **QUIET)
    assert set(seen) == {torch.float32}                       # off by default
    from lab4.checkpoint import load_model
    model = load_model(tmp_path / "fp32" / "last.ckpt", torch.device("cpu"))[0]
    test = load_split(mini_data, "test")
    test.labels = test.labels[:, :6]
    fp32 = predict_test(model, test, progress=False)
    np.testing.assert_array_equal(fp32, predict_test(model, test, progress=False, cpu_amp=False))
    bf16 = predict_test(model, test, progress=False, cpu_amp=True)
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)
    assert (bf16 - fp32).abs().max() < 0.05


# ---- the command lines -----------------------------------------------------------------------
@pytest.mark.slow
def test_lab4_test_writes_submission_and_gifs(smoke_run, mini_data, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--DR", str(mini_data), "--save_root", str(out), "--ckpt_path", str(smoke_run / "last.ckpt"),
            "--device", "cpu", "--val", "--val_vi_len", "12"]
    assert lab4_test(argv) == 0
    assert "submission.csv" in capsys.readouterr().out
    rows = read_submission(out / "submission.csv")
    assert rows.shape == (3150, 6144)
    first = load_split(mini_data, "test").images.reshape(5, -1)
    np.testing.assert_array_equal(rows[::630], first)   # row 0 of each sequence: the given frame
    for k in range(5):
        assert (out / f"pred_seq{k}.gif").read_bytes()[:4] == b"GIF8"
    psnr = pd.read_csv(out / "val" / "psnr_per_frame.csv")
    assert len(psnr) == 12 and {"frame", "psnr", "copy_first_frame_psnr"} <= set(psnr.columns)
    assert (out / "val" / "psnr_per_frame.png").stat().st_size > 0
    assert (out / "val" / "pred_val.gif").read_bytes()[:4] == b"GIF8"
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def test_lab4_train_test_flag_evaluates_a_checkpoint(smoke_run, mini_data, tmp_path, capsys):
    argv = ["--DR", str(mini_data), "--save_root", str(tmp_path), "--test", "--device", "cpu",
            "--ckpt_path", str(smoke_run / "last.ckpt"), "--val_vi_len", "6"]
    assert lab4_train(argv) == 0
    assert capsys.readouterr().out.startswith("val PSNR")
    assert len(pd.read_csv(tmp_path / "val" / "psnr_per_frame.csv")) == 6
    assert not (tmp_path / "last.ckpt").exists()


@pytest.mark.slow
def test_lab4_train_cli_trains_then_resumes_with_the_checkpoint_config(mini_data, tmp_path, capsys, monkeypatch):
    import lab4.checkpoint
    base = ["--DR", str(mini_data), "--save_root", str(tmp_path), "--device", "cpu"]
    assert lab4_train(base + ["--preset", "smoke", "--num_epoch", "1", "--steps_per_epoch", "1",
                              "--train_vi_len", "4", "--val_vi_len", "4"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("done: best val PSNR")
    reads, read = [], lab4.checkpoint.read_checkpoint
    for module in (lab4.checkpoint, train_mod):
        monkeypatch.setattr(module, "read_checkpoint", lambda path: reads.append(path) or read(path))
    # no --preset now: the model size and the other settings come from the checkpoint
    assert lab4_train(base + ["--ckpt_path", str(tmp_path / "last.ckpt"), "--num_epoch", "2"]) == 0
    assert reads == [str(tmp_path / "last.ckpt")]                      # read once: its config, then its state
    m = pd.read_csv(tmp_path / "metrics.csv")
    assert m["epoch"].tolist() == [1, 2] and m["steps"].tolist() == [1, 1]
    cfg = torch.load(tmp_path / "last.ckpt", weights_only=True)["config"]
    assert (cfg["F_dim"], cfg["train_vi_len"], cfg["num_epoch"]) == (16, 4, 2)


# ---- LAB4_SMOKE ------------------------------------------------------------------------------
@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("yes", True),
                                            ("0", False), ("", False), ("false", False)])
def test_smoke_mode_follows_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("LAB4_SMOKE", value)
    assert smoke_mode() is expected


def test_smoke_mode_is_off_when_unset(monkeypatch):
    monkeypatch.delenv("LAB4_SMOKE", raising=False)
    assert smoke_mode() is False


@pytest.mark.slow
def test_compile_wraps_the_forward_and_keeps_the_checkpoint_keys(mini_data, tmp_path, smoke_config, monkeypatch):
    """--compile hands the training forward and the validation rollout's step to torch.compile (faked
    here: compiling takes minutes on a CPU); the checkpoints keep the plain module's keys, so lab4-test
    and resume need no flag."""
    compiled = []

    def fake_compile(module, **kw):
        compiled.append(module)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    model_mod._compiled_step.cache_clear()
    run = train_mod.Run(smoke_config(mini_data, tmp_path, compile=True, num_epoch=1, steps_per_epoch=1), **QUIET)
    run.fit()
    model_mod._compiled_step.cache_clear()
    assert compiled == [run.model, VideoCVAE.rollout_step]       # the validation's rollout step, compiled once
    assert run.inference_model.compile_rollout
    keys = torch.load(tmp_path / "last.ckpt", weights_only=True)["state_dict"].keys()
    assert not [k for k in keys if "_orig_mod" in k] and set(keys) == set(run.model.state_dict())
    plain = train_mod.Run(smoke_config(mini_data, tmp_path / "plain", num_epoch=1, steps_per_epoch=1), **QUIET)
    assert plain.forward_model is plain.model and len(compiled) == 2
