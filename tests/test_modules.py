"""The five modules (spec section 2), template checkpoint compatibility, and the fast paths of
VideoCVAE proven equal to the template's step-by-step loop."""
import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from lab4.checkpoint import config_of, dims_from_state_dict, load_model, load_weights
from lab4.errors import Lab4Error
import lab4.model as model_mod
from lab4.model import VideoCVAE, cvae_loss, kl_divergence
from lab4.modules import Decoder_Fusion, Gaussian_Predictor, Generator, Label_Encoder, RGB_Encoder
from lab4.stepwise import forward_stepwise

SMALL = dict(F_dim=16, L_dim=8, N_dim=4, D_out_dim=24)


def count(module):
    return sum(p.numel() for p in module.parameters())


# ---- shapes and sizes ------------------------------------------------------------------------
def test_default_model_has_the_template_parameter_count():
    assert count(VideoCVAE()) == 1_585_620


def test_module_output_shapes_at_default_dims():
    torch.manual_seed(0)
    x, p = torch.rand(2, 3, 32, 64), torch.rand(2, 3, 32, 64)
    f = RGB_Encoder(3, 128)(x)
    lab = Label_Encoder(3, 32)(p)
    z, mu, logvar = Gaussian_Predictor(128 + 32, 12)(f, lab)
    d = Decoder_Fusion(128 + 32 + 12, 192)(f, lab, z)
    out = Generator(192, 3)(d)
    assert f.shape == (2, 128, 32, 64)
    assert lab.shape == (2, 32, 32, 64)
    assert z.shape == mu.shape == logvar.shape == (2, 12, 32, 64)
    assert d.shape == (2, 192, 32, 64)
    assert out.shape == (2, 3, 32, 64)


def test_template_quirk_leaky_relu_true_is_slope_one():
    m = VideoCVAE(**SMALL)
    assert m.label_transformation[3].negative_slope == 1.0
    assert m.Gaussian_Predictor[5].negative_slope == 1.0
    assert m.frame_transformation[0].leaky_relu.negative_slope == 0.01


def test_reparameterisation_uses_log_variance():
    mu = torch.tensor([1.0, -2.0, 0.0])
    logvar = torch.log(torch.tensor([4.0, 0.25, 1.0]))        # sigma = 2, 0.5, 1
    eps = torch.tensor([0.5, 2.0, -1.0])
    z = Gaussian_Predictor.reparameterize(mu, logvar, eps)
    torch.testing.assert_close(z, torch.tensor([2.0, -1.0, -1.0]))


def test_gaussian_predictor_splits_mu_then_logvar_and_samples_with_eps():
    torch.manual_seed(0)
    gp = Gaussian_Predictor(16 + 8, 4).eval()
    f, lab, eps = torch.randn(2, 16, 32, 64), torch.randn(2, 8, 32, 64), torch.randn(2, 4, 32, 64)
    z, mu, logvar = gp(f, lab, eps)
    raw = nn.Sequential.forward(gp, torch.cat([f, lab], 1))
    torch.testing.assert_close(mu, raw[:, :4])
    torch.testing.assert_close(logvar, raw[:, 4:])
    torch.testing.assert_close(z, mu + torch.exp(0.5 * logvar) * eps)


def test_kl_divergence_by_hand():
    mu = torch.ones(2, 4, 3, 5)                 # 2 frames of 60 latent elements
    logvar = torch.zeros(2, 4, 3, 5)            # KL per element = 0.5 * mu^2 = 0.5
    assert kl_divergence(mu, logvar, "sum").item() == pytest.approx(30.0)    # summed per frame
    assert kl_divergence(mu, logvar, "mean").item() == pytest.approx(0.5)
    assert kl_divergence(torch.zeros(2, 4, 3, 5), torch.zeros(2, 4, 3, 5)).item() == 0.0
    logvar = torch.full((1, 1, 1, 1), 2.0)      # 0.5 * (e^2 - 1 - 2) with mu = 0
    assert kl_divergence(torch.zeros(1, 1, 1, 1), logvar).item() == pytest.approx(0.5 * (math.e ** 2 - 3))


def test_cvae_loss_is_mse_plus_beta_kl():
    x_hat, x = torch.full((1, 2, 3, 4, 4), 0.5), torch.zeros(1, 2, 3, 4, 4)
    mu, logvar = torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)             # KL = 2 per frame
    loss, mse, kl = cvae_loss(x_hat, x, mu, logvar, beta=0.1)
    assert (mse.item(), kl.item()) == pytest.approx((0.25, 2.0))
    assert loss.item() == pytest.approx(0.25 + 0.1 * 2.0)
    with pytest.raises(ValueError, match="--kl_reduction"):
        kl_divergence(mu, logvar, "max")


# ---- template checkpoints --------------------------------------------------------------------
# Key names and shapes of the original template's VideoCVAE at default dims, written out by hand.
TEMPLATE_KEYS = {k: tuple(v) for k, v in
                 json.loads((Path(__file__).parent / "data" / "template_keys.json").read_text())["keys"].items()}
ABSENT_KEYS = ["frame_transformation.1.block.0.adaptor.weight",   # DepthConv(16, 16): no adaptor
               "Decoder_Fusion.3.skip.weight"]                     # RB(86, 86): no skip


def test_state_dict_has_the_template_key_names_and_shapes():
    sd = VideoCVAE().state_dict()
    for key, shape in TEMPLATE_KEYS.items():
        assert key in sd, key
        assert tuple(sd[key].shape) == shape, key
    for key in ABSENT_KEYS:
        assert key not in sd
    assert all(k.split(".")[0] in {"frame_transformation", "label_transformation", "Gaussian_Predictor",
                                   "Decoder_Fusion", "Generator"} for k in sd)


@pytest.fixture
def template_ckpt(tmp_path):
    """A checkpoint in the original template's format (no version, no config), default dims."""
    torch.manual_seed(3)
    model = VideoCVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    path = tmp_path / "epoch=70.ckpt"
    torch.save({"state_dict": model.state_dict(), "optimizer": opt.state_dict(), "lr": 1e-5,
                "tfr": 0.0, "last_epoch": 70}, path)
    return path, model.state_dict()


def test_template_checkpoint_loads_strictly(template_ckpt):
    path, sd = template_ckpt
    model, cfg, ckpt = load_model(path)
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    assert cfg.sigmoid_output is False and model.sigmoid_output is False
    assert cfg.colour_anchor is False and model.colour_anchor is False        # the template's output exactly
    assert (cfg.F_dim, cfg.L_dim, cfg.N_dim, cfg.D_out_dim) == (128, 32, 12, 192)


def test_template_checkpoint_dims_are_read_off_the_weights():
    sd = VideoCVAE(F_dim=64, L_dim=16, N_dim=6, D_out_dim=96).state_dict()
    assert dims_from_state_dict(sd) == dict(F_dim=64, L_dim=16, N_dim=6, D_out_dim=96)
    cfg = config_of({"state_dict": sd, "optimizer": {}, "lr": 1e-3, "tfr": 1.0, "last_epoch": 3})
    assert (cfg.F_dim, cfg.L_dim, cfg.N_dim, cfg.D_out_dim) == (64, 16, 6, 96)
    assert cfg.sigmoid_output is False


def test_load_weights_refuses_a_different_size_naming_both():
    ckpt = {"state_dict": VideoCVAE(**SMALL).state_dict()}
    with pytest.raises(Lab4Error, match=r"different model size") as e:
        load_weights(VideoCVAE(F_dim=32, L_dim=8, N_dim=4, D_out_dim=24), ckpt, "small.ckpt")
    assert "small.ckpt" in str(e.value) and "--F_dim 16" in str(e.value) and "--F_dim 32" in str(e.value)


def test_load_weights_names_an_unexpected_key():
    sd = dict(VideoCVAE(**SMALL).state_dict())
    sd["Generator.8.weight"] = torch.zeros(3, 3, 1, 1)
    with pytest.raises(Lab4Error) as e:
        load_weights(VideoCVAE(**SMALL), {"state_dict": sd}, "x.ckpt")
    assert "Generator.8.weight" in str(e.value)


# ---- fast paths == the template's step-by-step loop ------------------------------------------
def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("colour_anchor", [False, True])
@pytest.mark.parametrize("teacher_forcing", [True, False])
def test_forward_equals_stepwise_outputs_bn_stats_and_grads(teacher_forcing, colour_anchor):
    torch.manual_seed(0)
    fast = VideoCVAE(**SMALL, colour_anchor=colour_anchor).train()
    ref = copy.deepcopy(fast)
    B, T = 2, 5
    x, p = torch.rand(B, T, 3, 32, 64), torch.rand(B, T, 3, 32, 64)
    eps = torch.randn(B, T - 1, 4, 32, 64)
    w = [torch.randn(B, T - 1, 3, 32, 64), torch.randn(B * (T - 1), 4, 32, 64), torch.randn(B * (T - 1), 4, 32, 64)]
    outs = []
    for model, fn in ((fast, fast.forward), (ref, lambda *a: forward_stepwise(ref, *a))):
        x_hat, mu, logvar = fn(x, p, teacher_forcing, eps)
        ((x_hat * w[0]).mean() + (mu * w[1]).mean() + (logvar * w[2]).mean()).backward()
        outs.append((x_hat, mu, logvar))
    for a, b in zip(*outs):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    bn_fast, bn_ref = fast.label_transformation[2], ref.label_transformation[2]
    torch.testing.assert_close(bn_fast.running_mean, bn_ref.running_mean, atol=1e-5, rtol=0)
    torch.testing.assert_close(bn_fast.running_var, bn_ref.running_var, atol=1e-5, rtol=0)
    assert int(bn_fast.num_batches_tracked) == int(bn_ref.num_batches_tracked) == T - 1
    g_fast, g_ref = _grads(fast), _grads(ref)
    assert g_fast.keys() == g_ref.keys() and len(g_fast) == len(list(fast.parameters()))
    for n in g_fast:
        torch.testing.assert_close(g_fast[n], g_ref[n], atol=1e-5, rtol=1e-4, msg=n)


@pytest.fixture(scope="module")
def rollout_setup():
    torch.manual_seed(1)
    model = VideoCVAE(**SMALL)
    with torch.no_grad():                       # non-trivial BatchNorm running statistics
        model.label_transformation[2].running_mean.uniform_(-0.5, 0.5)
        model.label_transformation[2].running_var.uniform_(0.5, 2.0)
    first = torch.randint(0, 256, (3, 3, 32, 64), dtype=torch.uint8)
    labels = torch.randint(0, 256, (3, 6, 3, 32, 64), dtype=torch.uint8)
    return model.train(), first, labels, [11, 22, 33]


def test_rollout_together_equals_one_by_one(rollout_setup):
    model, first, labels, seeds = rollout_setup
    together = model.rollout(first, labels, seeds=seeds)
    assert together.shape == (3, 6, 3, 32, 64)
    for i, s in enumerate(seeds):
        alone = model.rollout(first[i:i + 1], labels[i:i + 1], seeds=[s])
        torch.testing.assert_close(together[i:i + 1], alone, atol=1e-5, rtol=0)
    assert model.training                       # the mode is restored


def test_rollout_uint8_equals_float_and_frame0_is_given(rollout_setup):
    model, first, labels, seeds = rollout_setup
    a = model.rollout(first, labels, seeds=seeds)
    b = model.rollout(first.float() / 255, labels.float() / 255, seeds=seeds)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    torch.testing.assert_close(a[:, 0], first.float() / 255)


def test_rollout_label_chunks_do_not_change_the_result(rollout_setup):
    model, first, labels, seeds = rollout_setup
    torch.testing.assert_close(model.rollout(first, labels, seeds=seeds, label_chunk=2),
                               model.rollout(first, labels, seeds=seeds), atol=1e-6, rtol=0)


@pytest.fixture
def traced_compile(monkeypatch):
    """torch.compile with TorchDynamo's tracing but the "eager" backend (inductor's code generation takes
    minutes on a CPU) and fullgraph=True: a graph break in the step, which CUDA graphs cannot replay, fails."""
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real(fn, backend="eager", fullgraph=True, **kw))
    model_mod._compiled_step.cache_clear()
    yield model_mod._compiled_step
    model_mod._compiled_step.cache_clear()


@pytest.mark.parametrize("prior, z_mode", [("fixed", "sample"), ("learned", "sample"), ("learned", "mean")])
@pytest.mark.slow
def test_compiled_rollout_equals_the_eager_rollout(rollout_setup, traced_compile, prior, z_mode):
    """--compile: the rollout's per-frame step, traced by torch.compile as one graph, gives the eager frames."""
    _, first, labels, seeds = rollout_setup
    torch.manual_seed(2)
    model = VideoCVAE(**SMALL, prior=prior, colour_anchor=True).eval()
    eager = model.rollout(first, labels, seeds=seeds, z_mode=z_mode)
    assert traced_compile.cache_info().currsize == 0
    model.compile_rollout = True
    compiled = model.rollout(first, labels, seeds=seeds, z_mode=z_mode)
    assert traced_compile.cache_info().currsize == 1           # the compiled step was the one used
    torch.testing.assert_close(compiled, eager, atol=1e-6, rtol=0)


def test_rollout_depends_on_the_seed(rollout_setup):
    model, first, labels, _ = rollout_setup
    a = model.rollout(first[:1], labels[:1], seeds=[1])
    b = model.rollout(first[:1], labels[:1], seeds=[2])
    assert not torch.allclose(a[:, 1:], b[:, 1:])
