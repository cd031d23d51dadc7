"""The start of training (lab4/model.py's data-derived initialisation), the copy-first-frame
report of each validation, the quick preset, and the quality benchmark's bookkeeping."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import lab4.config as config_mod

from lab4.config import make_config
from lab4.data import Split
from lab4.errors import Lab4Error
from lab4.model import VideoCVAE, cvae_loss, kl_divergence
from lab4.weights import init_output_head, init_posterior_at_prior
from lab4.config import check_config
from lab4.evaluate import validation_words
from lab4.weights import initialise_from_data

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_quality  # noqa: E402

SMALL = dict(F_dim=16, L_dim=8, N_dim=4, D_out_dim=24)


def batch(B=2, T=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, T, 3, 32, 64, generator=g), torch.rand(B, T, 3, 32, 64, generator=g)


@pytest.mark.parametrize("sigmoid", [True, False])
def test_output_head_starts_at_the_data_colour(sigmoid):
    torch.manual_seed(0)
    model = VideoCVAE(**SMALL, sigmoid_output=sigmoid)
    x, p = batch()
    before = model(x, p, teacher_forcing=True)[0].mean(dim=(0, 1, 3, 4))          # (3,)
    mean = torch.tensor([0.9, 0.85, 0.8])
    init_output_head(model, mean)
    after = model(x, p, teacher_forcing=True)[0].mean(dim=(0, 1, 3, 4))
    assert (after - mean).abs().max() < 0.08                                   # weights at PyTorch init: within 0.08
    assert (before - mean).abs().max() > 0.2                                    # PyTorch's start is far off


@pytest.mark.parametrize("sigmoid", [True, False])
def test_colour_anchor_starts_each_sequence_at_its_own_first_frame_colour(sigmoid):
    """--colour_anchor: the output adds the first frame's mean colour, so two videos shot in studios of
    different colours start at their own colour (not the training mean), in training and rollout."""
    torch.manual_seed(0)
    model = VideoCVAE(**SMALL, sigmoid_output=sigmoid, colour_anchor=True)
    init_output_head(model, torch.tensor([0.5, 0.5, 0.5]))
    x, p = batch()
    x[0], x[1] = x[0] * 0.1 + 0.85, x[1] * 0.1 + 0.55                          # a bright and a dim studio
    first_colour = x[:, 0].mean(dim=(2, 3))                                  # (B, 3)
    trained = model(x, p, teacher_forcing=True)[0].mean(dim=(1, 3, 4))      # (B, 3)
    rolled = model.rollout(x[:, 0], p).mean(dim=(1, 3, 4))                 # (B, 3), frame 0 included
    for out in (trained, rolled):                                            # random weights: within 0.12
        assert (out - first_colour).abs().max() < 0.12 and (out[0] - out[1]).mean() > 0.2
    plain = VideoCVAE(**SMALL, sigmoid_output=sigmoid)
    assert plain.anchor_of(x[:, 0]) is None                                  # off by default: as before


def test_posterior_starts_at_the_prior():
    torch.manual_seed(0)
    model = VideoCVAE()                                                        # full dims: the summed KL
    x, p = batch(T=2)
    with torch.no_grad():
        kl_default = kl_divergence(*model(x, p, True)[1:]).item()
        init_posterior_at_prior(model)
        kl_prior = kl_divergence(*model(x, p, True)[1:]).item()
    assert kl_default > 100 and kl_prior < 1


@pytest.mark.slow
def test_the_kl_gradient_at_step_one_shrinks_by_orders_of_magnitude():
    """Started at the prior, the summed KL's gradient at step 1 is >100x smaller (measured ~400x:
    5,190 -> 12 at full dims), so clipping at norm 1 no longer scales the MSE's share down ~10^4x."""
    def grad_norms(model):
        x, p = batch(T=3)
        x_hat, mu, logvar = model(x, p, False)
        _, mse, kl = cvae_loss(x_hat, x[:, 1:], mu, logvar, beta=1.0)
        params = [q for q in model.parameters()]
        norm = lambda g: torch.sqrt(sum((t ** 2).sum() for t in g if t is not None)).item()   # noqa: E731
        return (norm(torch.autograd.grad(mse, params, retain_graph=True, allow_unused=True)),
                norm(torch.autograd.grad(kl, params, allow_unused=True)))
    torch.manual_seed(0)
    model = VideoCVAE()
    mse_default, kl_default = grad_norms(model)
    assert kl_default > 100 * mse_default
    init_posterior_at_prior(model)
    mse_prior, kl_prior = grad_norms(model)
    assert kl_prior < kl_default / 100
    assert mse_prior / (mse_prior + kl_prior) > 100 * mse_default / (mse_default + kl_default)   # MSE's share


def test_initialise_from_data_uses_the_training_frames_and_can_be_switched_off():
    images = np.full((5, 3, 32, 64), 200, np.uint8)
    images[:, 2] = 100
    split = Split("train", images, images)
    for init_output, init_posterior in (("data", "prior"), ("default", "default")):
        torch.manual_seed(0)
        model = VideoCVAE(**SMALL)
        ref = {k: v.clone() for k, v in model.state_dict().items()}
        initialise_from_data(model, make_config(init_output=init_output, init_posterior=init_posterior), split.images)
        bias = model.Generator[-1].bias
        if init_output == "data":
            np.testing.assert_allclose(torch.sigmoid(bias).detach(), [200 / 255, 200 / 255, 100 / 255], atol=1e-5)
            assert model.Gaussian_Predictor[-1].bias.abs().max() == 0
        else:
            assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())


def test_template_preset_keeps_pytorchs_initialisation():
    cfg = make_config("template")
    assert (cfg.init_output, cfg.init_posterior) == ("default", "default")
    assert cfg.colour_anchor is False and make_config().colour_anchor is True
    with pytest.raises(Lab4Error, match="--init_output 'mean'"):
        check_config(make_config(init_output="mean", save_root="x"))


def test_validation_words_say_when_the_model_is_below_copy_first():
    assert validation_words(float("nan"), 20.0) == ""
    above = validation_words(25.0, 20.0)
    assert "25.00" in above and "copy-first 20.00" in above and "+5.00" in above and "BELOW" not in above
    below = validation_words(18.0, 20.0)
    assert "-2.00" in below and "BELOW copy-first-frame" in below


def test_quick_preset_is_full_size_and_short():
    cfg = make_config("quick")
    assert cfg.model_dims() == dict(F_dim=128, L_dim=32, N_dim=12, D_out_dim=192)
    steps = cfg.num_epoch * cfg.steps_per_epoch
    assert cfg.sigmoid_output and cfg.init_output == "data" and cfg.tfr == 0 and cfg.ema > 0
    if cfg.cpu_amp:                           # bf16 only where the CPU runs it natively: twice the steps
        assert config_mod._cpu_bf16_is_fast() and steps == 279 and cfg.train_vi_len == 12   # RESULTS 6w/6x
        assert cfg.appearance_memory and cfg.memory_follows_pose and cfg.memory_gap == 300   # RESULTS 6z/6za
    else:
        assert steps == 105 and cfg.train_vi_len == 16 and not cfg.appearance_memory   # it lost there (6l)
    assert set(bench_quality.NO_MEMORY) == set(config_mod.QUICK_MEMORY)  # the bench's recipes name every switch
    for name, recipe in bench_quality.RECIPES.items():              # every lever on quick, not quick itself
        if recipe.get("preset") == "quick" and name != "quick":
            assert set(recipe["flags"]) >= set(config_mod.QUICK_MEMORY), name


def test_the_long_rollout_figure_finds_each_curves_runs_in_the_committed_experiments():
    import figure_long_rollout as fig
    for name, curves in fig.PANELS.items():
        res = fig.panel(curves)
        assert name in res["data"] and res["copy_first_psnr"] > 0
        for label, _, _, seeds, clip in curves:
            runs = [r for r in res["runs"] if r["recipe"] == label]
            assert sorted(r["seed"] for r in runs) == list(seeds)
            assert all(r["config"]["train_vi_len"] == clip and len(r["final_per_frame"]) == 630 for r in runs)


def test_bench_quality_criteria_and_equal_wall_clock():
    run = lambda recipe, pts, minutes: {"recipe": recipe, "seed": 1, "train_minutes": minutes,   # noqa: E731
                                        "curve": [{"step": s, "minutes": m, "val_psnr": v} for s, m, v in pts],
                                        "final_val_psnr": pts[-1][2]}
    ref = run("reference", [(10, 1.0, 19.0), (50, 5.0, 22.0), (150, 12.0, 24.0)], 13.0)
    assert bench_quality.psnr_at(ref, 0.5) != bench_quality.psnr_at(ref, 0.5)   # nan: nothing yet
    assert bench_quality.psnr_at(ref, 6.0) == 22.0
    res = {"copy_first_psnr": 20.0, "runs": [
        ref, run("lab4 template flags", [(10, 0.8, 21.0), (100, 7.0, 23.5)], 7.0),
        run("quick", [(10, 0.8, 21.0), (160, 11.0, 27.0)], 11.0)]}
    got = {c["what"]: c["met"] for c in bench_quality.criteria(res)}
    assert got == {"template flags: final val PSNR - copy-first (>= +3 dB)": True,
                   "template flags: lowest epoch-end validation - copy-first (>= 0)": True,
                   "quick: training minutes (<= 13)": True,
                   "quick: final val PSNR - copy-first (>= +6 dB)": True,
                   "quick - reference at equal wall-clock (>= +2 dB)": True}   # 27 vs 22 at 11 min
    res["runs"][1]["curve"][0]["val_psnr"] = 19.5                    # mid-epoch (no epoch_end key: counts)
    assert not {c["what"]: c["met"] for c in bench_quality.criteria(res)}["template flags: lowest epoch-end validation - copy-first (>= 0)"]


def test_batchnorm_statistics_match_the_weights_after_recalibration():
    """After an optimizer step the running statistics lag the weights; recalibration sets them to
    the statistics of the current weights over the training poses, so eval mode matches training."""
    from lab4.weights import recalibrate_label_batchnorm
    torch.manual_seed(0)
    model = VideoCVAE(**SMALL)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    poses = (torch.rand(40, 3, 32, 64) > 0.97).float() * 0.5 + 0.5                 # mostly white, as a pose image
    x = torch.rand(2, 4, 3, 32, 64)
    for _ in range(3):
        x_hat, mu, logvar = model(x, poses[:8].reshape(2, 4, 3, 32, 64), False)
        loss = cvae_loss(x_hat, x[:, 1:], mu, logvar, 1.0)[0]
        opt.zero_grad(), loss.backward(), opt.step()
    pad, conv, bn = (model.label_transformation[i] for i in range(3))
    with torch.no_grad():
        h = conv(pad(poses)).double()
    true_mean, true_var = h.mean(dim=(0, 2, 3)), h.var(dim=(0, 2, 3))
    std = true_var.sqrt()
    assert ((bn.running_mean - true_mean).abs() / std).max() > 0.05                  # stale before
    recalibrate_label_batchnorm(model, (poses * 255).round().to(torch.uint8))
    with torch.no_grad():
        h8 = conv(pad((poses * 255).round() / 255)).double()
    np.testing.assert_allclose(bn.running_mean, h8.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bn.running_var, h8.var(dim=(0, 2, 3)), rtol=1e-3, atol=1e-8)


def test_training_saves_recalibrated_statistics(smoke_run, mini_data):
    from lab4.checkpoint import load_model
    from lab4.data import load_split
    model, _, _ = load_model(smoke_run / "last.ckpt", torch.device("cpu"))
    labels = load_split(mini_data, "train", 32, 64, None, 1).labels
    pad, conv, bn = (model.label_transformation[i] for i in range(3))
    idx = torch.linspace(0, len(labels) - 1, min(2048, len(labels))).round().long().numpy()
    with torch.no_grad():
        h = conv(pad(torch.from_numpy(labels[idx]).float() / 255)).double()
    np.testing.assert_allclose(bn.running_mean, h.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-6)


# ---- the weights' moving average (--ema) ---------------------------------------------------------
def test_weight_average_follows_the_warm_up_then_the_decay():
    from lab4.weights import weight_average
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    avg = weight_average(model, decay=0.5)
    expected = None
    for n, w in enumerate([0.0, 1.0, 2.0, 3.0, 4.0]):
        with torch.no_grad():
            model.weight.fill_(w)
        avg.update_parameters(model)
        if expected is None:
            expected = w                                   # the first update copies
        else:
            d = min(0.5, (1 + n) / (10 + n))
            expected = d * expected + (1 - d) * w
        assert float(avg.module.weight.detach()) == pytest.approx(expected)


@pytest.mark.slow
def test_checkpoints_hold_the_average_for_inference_and_the_raw_weights_for_resume(mini_data, tmp_path,
                                                                                  smoke_config):
    from lab4.train import train
    train(smoke_config(mini_data, tmp_path / "ema", num_epoch=1, ema=0.9), progress=False, log=lambda *a: None)
    ck = torch.load(tmp_path / "ema" / "last.ckpt", weights_only=True)
    assert ck["ema_n"] == 3 and set(ck["train_state_dict"]) == set(ck["state_dict"])
    differ = [k for k in ck["state_dict"] if ck["state_dict"][k].is_floating_point()
              and not torch.equal(ck["state_dict"][k], ck["train_state_dict"][k])]
    assert any(k.endswith("weight") for k in differ)       # the average is not the last step's weights
    train(smoke_config(mini_data, tmp_path / "raw", num_epoch=1, ema=0.0), progress=False, log=lambda *a: None)
    assert "train_state_dict" not in torch.load(tmp_path / "raw" / "last.ckpt", weights_only=True)
    assert make_config("template").ema == 0 and make_config().ema > 0


def test_ema_must_be_a_decay():
    with pytest.raises(Lab4Error, match=r"--ema 1.0: expected a decay in \[0, 1\)"):
        check_config(make_config(ema=1.0, save_root="x"))


def test_a_config_saved_before_the_colour_anchor_keeps_the_plain_output():
    """Checkpoints and config.json files of version <= 4 have no colour_anchor key: they were
    trained without the anchor, so reading them must not switch it on (the default now is on)."""
    old = make_config().to_dict()
    del old["colour_anchor"]
    assert config_mod.TrainConfig.from_dict(old).colour_anchor is False
    assert config_mod.TrainConfig.from_dict(make_config().to_dict()).colour_anchor is True


@pytest.mark.slow
def test_colour_anchor_is_kept_in_the_checkpoint_for_lab4_test(mini_data, tmp_path, smoke_config):
    """A --colour_anchor run's checkpoint rebuilds the anchored model (lab4-test needs no flag);
    the anchor holds no weights, so the five modules' keys are the template's."""
    from lab4.checkpoint import load_model
    from lab4.train import train
    train(smoke_config(mini_data, tmp_path, num_epoch=1, steps_per_epoch=1, colour_anchor=True),
          progress=False, log=lambda *a: None)
    model, cfg, ck = load_model(tmp_path / "last.ckpt")
    assert cfg.colour_anchor and model.colour_anchor
    assert set(ck["state_dict"]) == set(VideoCVAE(**cfg.model_dims()).state_dict())
    assert float(model.Generator[-1].bias.abs().max()) < 0.05               # started at 0: the anchor has the colour
