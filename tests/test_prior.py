"""The learned prior (--prior learned, SVG-LP's p(z_t | x_{t-1}, p_t)), the rollout's z modes
(--z sample / mean), lab4-test's --samples K spread, and SSIM next to PSNR."""
import copy

import numpy as np
import pandas as pd
import pytest
import torch

from lab4.checkpoint import load_model
from lab4.cli import test_main as lab4_test
from lab4.evaluate import sample_spread, spread_words, validate, validate_samples
from lab4.data import load_split
from lab4.model import VideoCVAE, cvae_loss, kl_divergence
from lab4.weights import init_posterior_at_prior
from lab4.score import ssim_per_frame
from lab4.stepwise import forward_stepwise
from lab4.cli import train_main as lab4_train
from lab4.train import train

SMALL = dict(F_dim=16, L_dim=8, N_dim=4, D_out_dim=24)
QUIET = dict(progress=False, log=lambda *a: None)
FIVE = ("frame_transformation.", "label_transformation.", "Gaussian_Predictor.", "Decoder_Fusion.", "Generator.")


# ---- the model ---------------------------------------------------------------------------------
def test_learned_prior_adds_only_its_own_keys():
    torch.manual_seed(0)
    fixed, learned = VideoCVAE(**SMALL).state_dict(), VideoCVAE(**SMALL, prior="learned").state_dict()
    assert all(k.startswith(FIVE) for k in fixed)                      # the template's keys, nothing else
    extra = set(learned) - set(fixed)
    assert set(fixed) <= set(learned) and extra and all(k.startswith("learned_prior.") for k in extra)
    for k in fixed:                                                     # same shapes for the five modules
        assert learned[k].shape == fixed[k].shape
    assert VideoCVAE(**SMALL).prior == "fixed" and VideoCVAE(**SMALL, prior="learned").prior == "learned"
    with pytest.raises(ValueError, match="--prior 'svg'"):
        VideoCVAE(**SMALL, prior="svg")


def test_fixed_prior_builds_the_same_weights_from_the_same_seed():
    """--prior fixed draws no extra random numbers at construction: the same seed gives the
    template model's weights exactly, and forward returns the template's three tensors."""
    torch.manual_seed(3)
    a = VideoCVAE(**SMALL)
    torch.manual_seed(3)
    b = VideoCVAE(**SMALL, prior="fixed")
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    x = torch.rand(1, 3, 3, 32, 64)
    assert len(b(x, x, True)) == 3


@pytest.mark.parametrize("teacher_forcing", [True, False])
def test_learned_prior_forward_equals_stepwise(teacher_forcing):
    """The batched forward's prior statistics are those of the step-by-step loop: the prior sees
    the previous frame the decoder sees (ground truth under teacher forcing, else its own)."""
    torch.manual_seed(0)
    fast = VideoCVAE(**SMALL, prior="learned").train()
    ref = copy.deepcopy(fast)
    B, T = 2, 5
    x, p = torch.rand(B, T, 3, 32, 64), torch.rand(B, T, 3, 32, 64)
    eps = torch.randn(B, T - 1, 4, 32, 64)
    a, b = fast(x, p, teacher_forcing, eps), forward_stepwise(ref, x, p, teacher_forcing, eps)
    assert len(a) == len(b) == 5
    for u, v in zip(a, b):
        assert u.shape == v.shape
        torch.testing.assert_close(u, v, atol=1e-5, rtol=0)
    loss = cvae_loss(a[0], x[:, 1:], *a[1:3], 1.0, "sum", *a[3:])[0]
    loss.backward()
    assert fast.learned_prior[-1].weight.grad.abs().sum() > 0            # the KL trains the prior


def test_kl_to_a_learned_prior():
    torch.manual_seed(0)
    mu, logvar = torch.randn(6, 4, 8, 8), torch.randn(6, 4, 8, 8)
    zeros = torch.zeros_like(mu)
    for reduction in ("sum", "mean"):                                   # N(0, I) given explicitly: the fixed KL
        torch.testing.assert_close(kl_divergence(mu, logvar, reduction, zeros, zeros),
                                   kl_divergence(mu, logvar, reduction))
    assert float(kl_divergence(mu, logvar, "sum", mu, logvar)) == pytest.approx(0.0, abs=1e-5)
    pmu, plogvar = torch.randn_like(mu), torch.randn_like(mu)
    kl = kl_divergence(mu, logvar, "mean", pmu, plogvar)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(pmu, (0.5 * plogvar).exp())
    torch.testing.assert_close(kl, torch.distributions.kl_divergence(q, p).mean())
    # a posterior within 1e-5 of its prior (late in training): the float32 KL stays >= 0 and matches float64
    near_mu, near_logvar = 1e-3 * mu + 1e-5 * pmu, 1e-3 * logvar + 1e-5 * plogvar
    small = kl_divergence(1e-3 * mu, 1e-3 * logvar, "sum", near_mu, near_logvar)
    exact = kl_divergence((1e-3 * mu).double(), (1e-3 * logvar).double(), "sum", near_mu.double(), near_logvar.double())
    assert float(small) >= 0 and float(small) == pytest.approx(float(exact), rel=1e-3)


def test_init_at_prior_starts_the_learned_prior_at_n01_too():
    torch.manual_seed(0)
    model = VideoCVAE(**SMALL, prior="learned")
    init_posterior_at_prior(model)
    mu, logvar = model.learned_prior.distribution(torch.rand(2, 16, 32, 64), torch.rand(2, 8, 32, 64))
    assert mu.abs().max() < 0.05 and logvar.abs().max() < 0.05


# ---- rollouts: z from the prior ----------------------------------------------------------------
def _rollout_inputs():
    g = torch.Generator().manual_seed(5)
    return (torch.randint(0, 256, (2, 3, 32, 64), dtype=torch.uint8, generator=g),
            torch.randint(0, 256, (2, 5, 3, 32, 64), dtype=torch.uint8, generator=g))


def test_z_mean_of_the_fixed_prior_is_zero_noise():
    torch.manual_seed(0)
    model = VideoCVAE(**SMALL).eval()
    first, labels = _rollout_inputs()
    a = model.rollout(first, labels, seeds=[1, 2], z_mode="mean")
    b = model.rollout(first, labels, seeds=[7, 8], z_mode="mean")      # no randomness left
    assert torch.equal(a, b)
    x = first.float() / 255
    with torch.no_grad():
        expected = model.generate(model.frame_transformation(x), model.encode_labels(labels[:, 1:2].float() / 255)[:, 0],
                                  torch.zeros(2, 4, 32, 64))
    torch.testing.assert_close(a[:, 1], expected)
    assert not torch.equal(a, model.rollout(first, labels, seeds=[1, 2]))   # sampling differs


def test_learned_prior_rollout_samples_around_its_mean_and_sequences_are_independent():
    torch.manual_seed(0)
    model = VideoCVAE(**SMALL, prior="learned").eval()
    first, labels = _rollout_inputs()
    together = model.rollout(first, labels, seeds=[3, 4])
    alone = model.rollout(first[1:], labels[1:], seeds=[4])
    torch.testing.assert_close(together[1:], alone, atol=1e-5, rtol=0)
    mean = model.rollout(first, labels, seeds=[3, 4], z_mode="mean")
    assert torch.equal(mean, model.rollout(first, labels, seeds=[9, 9], z_mode="mean"))
    assert not torch.allclose(mean, together)


# ---- training, resuming and testing with the learned prior ------------------------------------
@pytest.fixture(scope="module")
def learned_run(mini_data, tmp_path_factory, smoke_config):
    root = tmp_path_factory.mktemp("learned")
    train(smoke_config(mini_data, root, prior="learned"), **QUIET)
    return root


@pytest.mark.slow
def test_learned_prior_trains_and_saves_its_weights(learned_run):
    ckpt = torch.load(learned_run / "last.ckpt", weights_only=True)
    assert ckpt["config"]["prior"] == "learned"
    for sd in (ckpt["state_dict"], ckpt["train_state_dict"]):
        assert any(k.startswith("learned_prior.") for k in sd)
    m = pd.read_csv(learned_run / "metrics.csv")
    assert np.isfinite(m[["loss", "kl", "val_psnr"]].to_numpy(float)).all() and (m["kl"] >= 0).all()
    model, cfg, _ = load_model(learned_run / "last.ckpt")
    assert model.prior == "learned" and cfg.prior == "learned"


@pytest.mark.slow
def test_learned_prior_resume_is_exact(mini_data, tmp_path, smoke_config):
    full, split = tmp_path / "full", tmp_path / "split"
    kw = dict(prior="learned", num_epoch=2, steps_per_epoch=2, train_vi_len=4, val_vi_len=3, tfr=0.5, seed=7)
    train(smoke_config(mini_data, full, **kw), **QUIET)
    train(smoke_config(mini_data, split, **{**kw, "num_epoch": 1}), **QUIET)
    train(smoke_config(mini_data, split, **kw, ckpt_path=str(split / "last.ckpt")), **QUIET)
    a, b = (pd.read_csv(r / "metrics.csv")[["loss", "kl"]] for r in (full, split))
    pd.testing.assert_frame_equal(a, b, rtol=0, atol=1e-6)
    wa, wb = (torch.load(r / "last.ckpt", weights_only=True)["state_dict"] for r in (full, split))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-6, rtol=0, msg=k)


@pytest.mark.slow
def test_lab4_test_reads_the_prior_from_the_checkpoint(learned_run, mini_data, tmp_path, capsys, short_test_sequences):
    out = tmp_path / "test"
    args = ["--DR", str(mini_data), "--save_root", str(out), "--ckpt_path", str(learned_run / "last.ckpt"),
            "--device", "cpu", "--val_vi_len", "12"]
    assert lab4_test(args + ["--val", "--samples", "3"]) == 0
    said = capsys.readouterr().out
    assert "3 z-samples: mean" in said and "best" in said and "worst" in said
    spread = pd.read_csv(out / "val" / "psnr_samples.csv")
    per_frame = pd.read_csv(out / "val" / "psnr_per_frame.csv")
    assert spread["seed"].tolist() == [1, 2, 3] and spread["val_psnr"].nunique() == 3     # three different z
    assert spread["val_psnr"][0] == pytest.approx(per_frame["psnr"][1:601].mean())       # sample 0 = --seed's
    assert (out / "submission.csv").is_file()
    # a flag that would need other weights is refused in one line
    assert lab4_test(args + ["--prior", "fixed"]) == 2
    assert "trained with --prior learned" in capsys.readouterr().err


def test_samples_needs_val_and_a_positive_count(smoke_run, mini_data, tmp_path, capsys):
    args = ["--DR", str(mini_data), "--save_root", str(tmp_path), "--ckpt_path", str(smoke_run / "last.ckpt"),
            "--device", "cpu"]
    assert lab4_test(args + ["--samples", "3"]) == 2
    assert "--samples 3" in capsys.readouterr().err
    assert lab4_test(args + ["--val", "--samples", "0"]) == 2
    assert not (tmp_path / "submission.csv").exists()


def test_validate_samples_sample_k_equals_validate_with_its_seed(smoke_run, mini_data):
    model, cfg, _ = load_model(smoke_run / "last.ckpt")
    val = load_split(mini_data, "val", 32, 64)
    preds, psnrs = validate_samples(model, val, 10, seeds=[4, 5])
    for k, seed in enumerate([4, 5]):
        pred, psnr = validate(model, val, 10, seed=seed)
        torch.testing.assert_close(preds[k], pred, atol=1e-6, rtol=0)
        np.testing.assert_allclose(psnrs[k], psnr, atol=1e-6)
    words = spread_words(sample_spread(psnrs, [4, 5]))
    assert words.startswith("2 z-samples: mean") and "(seed 4)" in words and "(seed 5)" in words


def test_train_cli_refuses_an_unknown_prior(mini_data, tmp_path, capsys):
    with pytest.raises(SystemExit):
        lab4_train(["--DR", str(mini_data), "--save_root", str(tmp_path), "--prior", "svg"])
    assert "--prior" in capsys.readouterr().err


# ---- SSIM ---------------------------------------------------------------------------------------
def test_ssim_per_frame():
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(4, 3, 32, 64, generator=g)
    assert np.allclose(ssim_per_frame(gt, gt), 1.0)
    noisy = (gt + 0.2 * torch.randn(4, 3, 32, 64, generator=g)).clamp(0, 1)
    s = ssim_per_frame(noisy, gt)
    assert s.shape == (4,) and (s < 0.95).all() and (s > -1).all()
    worse = ssim_per_frame((gt + 0.5 * torch.randn(4, 3, 32, 64, generator=g)).clamp(0, 1), gt)
    assert (worse < s).all()


def test_val_csv_has_ssim_next_to_psnr(smoke_run):
    df = pd.read_csv(smoke_run / "val" / "psnr_per_frame.csv")
    assert {"frame", "psnr", "ssim", "copy_first_frame_psnr", "copy_first_frame_ssim"} <= set(df.columns)
    assert df["ssim"].between(-1, 1).all() and df["ssim"][0] == pytest.approx(1.0)   # frame 0 is given
    assert df["copy_first_frame_ssim"][0] == pytest.approx(1.0)
