"""The whole 630 frames (issue 26): the drift report, the appearance memory, the fed-back frame's
levers, the long clip late in training, `lab4-test --average K` / `--average_ckpts`, and the held-out
'travel' synthetic style."""
import copy
import re

import numpy as np
import pandas as pd
import pytest
import torch

from lab4.cli import test_main as lab4_test
from lab4.cli import train_main as lab4_train
from lab4.config import clip_of_epoch, make_config
from lab4.data import load_split
from lab4.evaluate import drift, drift_words
from lab4.infer import predict_test
from lab4.model import VideoCVAE
from lab4.score import to_uint8
from lab4.stepwise import forward_stepwise
from lab4.synth import MOVES, STYLES, _choreography, make_video

SMALL = dict(F_dim=16, L_dim=8, N_dim=4, D_out_dim=24)


def batch(B=2, T=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, T, 3, 32, 64, generator=g), torch.rand(B, T, 3, 32, 64, generator=g)


# ---- the drift -----------------------------------------------------------------------------------
def test_drift_is_the_first_150_scored_frames_minus_frames_451_to_600():
    psnr = np.full(630, 20.0)
    psnr[0] = 100.0                                   # the given frame: never scored
    psnr[1:151], psnr[451:601], psnr[601:] = 33.0, 30.5, 0.0    # 601..629 are not scored either
    assert drift(psnr) == {"early": 33.0, "late": 30.5, "drift": 2.5}
    assert "frames 1-150 33.00, 451-600 30.50 dB (drift 2.50)" in drift_words(psnr)
    assert np.isnan(drift(psnr[:600])["drift"]) and drift_words(psnr[:600]) == ""   # too short to have a late part


# ---- appearance memory -----------------------------------------------------------------------------
def test_an_untrained_appearance_memory_changes_nothing_and_draws_no_random_numbers():
    x, p = batch()
    torch.manual_seed(0)
    plain = VideoCVAE(**SMALL)
    after_plain = torch.rand(1)
    torch.manual_seed(0)
    memory = VideoCVAE(**SMALL, appearance_memory=True)
    assert torch.equal(torch.rand(1), after_plain)                     # the same random stream after it
    extra = set(memory.state_dict()) - set(plain.state_dict())
    assert extra == {"appearance_memory.weight", "appearance_memory.bias"}
    memory.load_state_dict(plain.state_dict(), strict=False)
    eps = torch.randn(2, 4, 4, 32, 64)
    for tf in (True, False):
        torch.testing.assert_close(memory(x, p, tf, eps)[0], plain(x, p, tf, eps)[0])
    torch.testing.assert_close(memory.rollout(x[:, 0], p, seeds=[3, 4]), plain.rollout(x[:, 0], p, seeds=[3, 4]))


def test_a_trained_appearance_memory_carries_frame_0_and_equals_the_stepwise_reference():
    torch.manual_seed(0)
    model = VideoCVAE(**SMALL, appearance_memory=True, colour_anchor=True)
    with torch.no_grad():
        model.appearance_memory.weight.normal_(0, 0.3)               # as if trained: frame 0 now matters
    x, p = batch()
    eps = torch.randn(2, 4, 4, 32, 64)
    for tf in (True, False):
        torch.testing.assert_close(model(x, p, tf, eps)[0], forward_stepwise(model, x, p, tf, eps)[0])
    other_first = x.clone()
    other_first[:, 0] = 1 - x[:, 0]
    a, b = model.rollout(x[:, 0], p, seeds=[1, 2]), model.rollout(other_first[:, 0], p, seeds=[1, 2])
    assert (a[:, 3] - b[:, 3]).abs().max() > 1e-3                    # frame 3 depends on frame 0


def test_frame0_share_says_how_much_the_memory_uses_frame_0():
    memory = VideoCVAE(**SMALL, appearance_memory=True).appearance_memory
    assert memory.frame0_share() == 0.0                                # untrained: previous frame only
    with torch.no_grad():
        memory.weight[:, 16:] = torch.eye(16)[:, :, None, None]         # both frames alike
    assert memory.frame0_share() == pytest.approx(2 ** -0.5)
    with torch.no_grad():
        memory.weight[:, :16] = 0                                        # frame 0 only
    assert memory.frame0_share() == 1.0


def test_lab4_test_val_says_how_much_a_trained_memory_uses_frame_0(mini_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert lab4_train(["--DR", str(mini_data), "--save_root", str(run), "--preset", "smoke", "--device", "cpu",
                       "--appearance_memory", "--num_epoch", "1", "--num_workers", "0"]) == 0
    assert lab4_test(["--DR", str(mini_data), "--save_root", str(tmp_path / "out"), "--device", "cpu",
                      "--ckpt_path", str(run / "last.ckpt"), "--val", "--val_vi_len", "8"]) == 0
    share = re.search(r"appearance memory: frame 0's share of its weights ([0-9.]+)", capsys.readouterr().out)
    assert share and 0 < float(share.group(1)) < 1                      # the steps moved it off 0


def test_appearance_memory_is_off_in_the_template_and_by_default_and_in_old_configs():
    from lab4.config import TrainConfig
    assert not make_config("template").appearance_memory and not make_config().appearance_memory
    assert not TrainConfig.from_dict({"F_dim": 16}).appearance_memory          # a version-5 config
    model = VideoCVAE.from_config(make_config("template"))
    assert model.appearance_memory is None and not any(k.startswith("appearance") for k in model.state_dict())


# ---- the memory following the pose -------------------------------------------------------------------
def pose_image(x: float, y: float, H=32, W=64) -> torch.Tensor:
    """(1, 3, H, W): white, with a 3x3 black square centred on pixel (x, y)."""
    img = torch.ones(1, 3, H, W)
    img[..., y - 1:y + 2, x - 1:x + 2] = 0
    return img


def test_the_body_centre_is_the_pose_images_ink_and_the_features_move_with_it():
    from lab4.model import body_centre, shift_features
    torch.testing.assert_close(body_centre(pose_image(10, 5)), torch.tensor([[10.0, 5.0]]))
    torch.testing.assert_close(body_centre(torch.ones(1, 3, 32, 64)), torch.tensor([[31.5, 15.5]]))   # blank
    feat = torch.randn(2, 4, 32, 64)
    torch.testing.assert_close(shift_features(feat, torch.zeros(2, 2)), feat)
    moved = shift_features(feat, torch.tensor([[3.0, 0.0], [0.0, -2.0]]))          # 3 px right; 2 px up
    torch.testing.assert_close(moved[0, :, :, 3:], feat[0, :, :, :-3])
    torch.testing.assert_close(moved[1, :, :-2], feat[1, :, 2:])


def test_the_memory_following_the_pose_adds_frame_0_moved_with_the_body_and_equals_the_stepwise_reference():
    torch.manual_seed(0)
    follow = VideoCVAE(**SMALL, appearance_memory=True, memory_follows_pose=True, colour_anchor=True)
    fixed = VideoCVAE(**SMALL, appearance_memory=True, colour_anchor=True)
    with torch.no_grad():
        follow.appearance_memory.weight.normal_(0, 0.3)               # as if trained: frame 0 matters
    w = follow.appearance_memory.weight                                 # (F, 3F, 1, 1): previous, frame 0, moved
    assert w.shape == (16, 48, 1, 1)
    state = follow.state_dict()
    state["appearance_memory.weight"] = torch.cat([w[:, :16], w[:, 16:32] + w[:, 32:]], 1)
    fixed.load_state_dict(state)                                       # frame 0's two copies summed
    x, _ = batch(T=4)
    eps = torch.randn(2, 3, 4, 32, 64)
    still = pose_image(20, 16).expand(2, 4, 3, 32, 64).clone()
    for tf in (True, False):                                         # a body that stays put: as the fixed memory
        torch.testing.assert_close(follow(x, still, tf, eps)[0], fixed(x, still, tf, eps)[0])
    walking = torch.cat([pose_image(20 + 5 * t, 16) for t in range(4)]).expand(2, 4, 3, 32, 64).clone()
    for tf in (True, False):
        torch.testing.assert_close(follow(x, walking, tf, eps)[0], forward_stepwise(follow, x, walking, tf, eps)[0])
    assert (follow(x, walking, False, eps)[0] - fixed(x, walking, False, eps)[0]).abs().max() > 1e-4
    context = follow.context_of(x[:, 0], None, walking[:, 0])
    memory_at_frame_2 = follow.at_pose(context, walking[:, 2])[1]     # the body moved 10 px right
    torch.testing.assert_close(memory_at_frame_2[:, :16], context[1])
    torch.testing.assert_close(memory_at_frame_2[:, 16:, :, 10:], context[1][..., :-10])
    a = follow.rollout(x[:, 0], walking, seeds=[1, 2])
    b = follow.rollout(x[:, 0], (walking * 255).to(torch.uint8), seeds=[1, 2])   # uint8 poses, as lab4-test
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_the_memory_following_the_pose_needs_the_memory_and_is_off_by_default(mini_data, tmp_path, capsys):
    assert not make_config().memory_follows_pose and not make_config("template").memory_follows_pose
    assert lab4_train(["--DR", str(mini_data), "--save_root", str(tmp_path / "r"), "--preset", "smoke",
                       "--device", "cpu", "--memory_follows_pose"]) == 2
    err = capsys.readouterr().err
    assert "--memory_follows_pose True: expected --appearance_memory too" in err and err.count("\n") == 1


# ---- frame 0's body code ------------------------------------------------------------------------------
def test_the_body_mask_is_the_pose_images_ink_widened_and_the_code_averages_frame_0_over_it():
    from lab4.model import body_code, body_mask
    mask = body_mask(pose_image(20, 16))[0, 0]                         # a 3x3 square, widened by 2 px each side
    assert mask.shape == (32, 64) and float(mask.max()) == 1.0
    assert (mask[13:20, 17:24] == 1).all() and mask.sum() == 49          # 7 x 7 around (20, 16), nothing else
    assert float(body_mask(torch.ones(1, 3, 32, 64)).abs().max()) == 0.0  # a blank pose image: no body
    feat = torch.zeros(1, 4, 32, 64)
    feat[..., 13:20, 17:24] = torch.arange(1.0, 5.0).view(1, 4, 1, 1)     # channel c is c + 1 on the body
    feat[..., :5, :5] = 100.0                                            # and anything off it
    torch.testing.assert_close(body_code(feat, pose_image(20, 16)), torch.arange(1.0, 5.0).view(1, 4, 1, 1))


def test_the_body_code_is_painted_where_the_body_is_now_and_equals_the_stepwise_reference():
    torch.manual_seed(0)
    coded = VideoCVAE(**SMALL, appearance_memory=True, memory_body_code=True, colour_anchor=True)
    plain = VideoCVAE(**SMALL, appearance_memory=True, colour_anchor=True)
    w = coded.appearance_memory.weight                                  # (F, 3F, 1, 1): previous, frame 0, body code
    assert w.shape == (16, 48, 1, 1) and float(w.detach()[:, 32:].abs().max()) == 0.0   # untrained: the code unused
    x, _ = batch(T=4)
    eps = torch.randn(2, 3, 4, 32, 64)
    walking = torch.cat([pose_image(20 + 5 * t, 16) for t in range(4)]).expand(2, 4, 3, 32, 64).clone()
    with torch.no_grad():
        w[:, :32].normal_(0, 0.3)                                       # as if trained, the code still unused
    state = coded.state_dict()
    state["appearance_memory.weight"] = w[:, :32]
    plain.load_state_dict(state)
    for tf in (True, False):                                           # as the plain memory while the code is unused
        torch.testing.assert_close(coded(x, walking, tf, eps)[0], plain(x, walking, tf, eps)[0])
    with torch.no_grad():
        w[:, 32:].normal_(0, 0.3)
    for tf in (True, False):
        torch.testing.assert_close(coded(x, walking, tf, eps)[0], forward_stepwise(coded, x, walking, tf, eps)[0])
    assert (coded(x, walking, False, eps)[0] - plain(x, walking, False, eps)[0]).abs().max() > 1e-4
    context = coded.context_of(x[:, 0], None, walking[:, 0])
    painted = coded.at_pose(context, walking[:, 2])[1][:, 16:]         # (B, F, H, W); the body is at x = 30 now
    torch.testing.assert_close(painted[..., 16, 30], context[3][..., 0, 0])        # the code on the body
    assert float(painted[..., 20].abs().max()) == 0.0                   # none where frame 0's body was
    a = coded.rollout(x[:, 0], walking, seeds=[1, 2])
    b = coded.rollout(x[:, 0], (walking * 255).to(torch.uint8), seeds=[1, 2])   # uint8 poses, as lab4-test
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_the_body_code_needs_the_memory_and_is_off_by_default(mini_data, tmp_path, capsys):
    assert not make_config().memory_body_code and not make_config("template").memory_body_code
    assert not make_config("quick").memory_body_code
    assert lab4_train(["--DR", str(mini_data), "--save_root", str(tmp_path / "r"), "--preset", "smoke",
                       "--device", "cpu", "--memory_body_code"]) == 2
    err = capsys.readouterr().err
    assert "--memory_body_code True: expected --appearance_memory too" in err and err.count("\n") == 1


def test_the_memory_can_learn_at_a_multiple_of_the_lr():
    from lab4.train import build_optimizer
    plain = make_config("smoke", appearance_memory=True)
    assert len(build_optimizer(plain, VideoCVAE.from_config(plain)).param_groups) == 1
    cfg = make_config("smoke", appearance_memory=True, memory_lr_scale=10.0)
    model = VideoCVAE.from_config(cfg)
    groups = build_optimizer(cfg, model).param_groups
    assert [g["lr"] for g in groups] == [cfg.lr, 10 * cfg.lr]
    assert {id(w) for w in groups[1]["params"]} == {id(w) for w in model.appearance_memory.parameters()}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


# ---- the memory's frame taken before the clip (--memory_gap) ----------------------------------------
def test_frames_before_are_the_frames_and_poses_gap_frames_before_each_sequence_clamped_at_frame_0():
    from lab4.data import SequenceBatches, Split
    images = np.arange(40, dtype=np.uint8)[:, None, None, None] * np.ones((1, 3, 2, 2), np.uint8)   # frame i is i
    batches = SequenceBatches(Split("train", images, 255 - images), seq_len=8)
    frame, pose = batches.frames_before(torch.tensor([0, 2, 3, 4]), torch.tensor([5, 0, 7, 30]))
    assert (frame[:, 0, 0, 0] * 255).round().tolist() == [0, 16, 17, 2]          # 0 (clamped), 16, 24-7, 32-30
    assert ((1 - pose[:, 0, 0, 0]) * 255).round().tolist() == [0, 16, 17, 2]       # the same frames' poses


@pytest.mark.parametrize("follow, code", [(False, False), (True, True)])
def test_the_memory_from_another_frame_keeps_the_clips_colour_and_equals_the_stepwise_reference(follow, code):
    torch.manual_seed(0)
    model = VideoCVAE(**SMALL, appearance_memory=True, colour_anchor=True, memory_follows_pose=follow,
                      memory_body_code=code)
    with torch.no_grad():
        model.appearance_memory.weight.normal_(0, 0.3)               # as if trained: frame 0 matters
    x, p = batch()
    other, other_pose = batch(seed=1)
    eps = torch.randn(2, 4, 4, 32, 64)
    for tf in (True, False):
        plain = model(x, p, tf, eps)[0]
        torch.testing.assert_close(model(x, p, tf, eps, memory=(x[:, 0], p[:, 0]))[0], plain)   # the clip's own
        moved = model(x, p, tf, eps, memory=(other[:, 0], other_pose[:, 0]))[0]
        assert (moved - plain).abs().max() > 1e-4                     # float noise is ~1e-7
        torch.testing.assert_close(moved, forward_stepwise(model, x, p, tf, eps, memory=(other[:, 0], other_pose[:, 0]))[0])
    untrained = VideoCVAE(**SMALL, appearance_memory=True, colour_anchor=True)   # the colour is the clip's:
    torch.testing.assert_close(untrained(x, p, True, eps, memory=(other[:, 0], other_pose[:, 0]))[0],
                               untrained(x, p, True, eps)[0])                   # an unused memory changes nothing


@pytest.mark.slow
def test_a_run_with_a_memory_gap_takes_each_clips_memory_from_up_to_gap_frames_before_it(mini_data, tmp_path,
                                                                                          smoke_config, monkeypatch):
    import lab4.train as train_mod
    from lab4.data import SequenceBatches
    forwards, asked, real_forward, real_before = [], [], VideoCVAE.forward, SequenceBatches.frames_before

    def recording_forward(model, x, p, tf, eps=None, memory=None):
        forwards.append((x[:, 0].clone(), None if memory is None else memory[0].clone()))
        return real_forward(model, x, p, tf, eps, memory=memory)

    def recording_before(batches, seq_ids, gaps):
        asked.append((seq_ids.clone(), gaps.clone()))
        return real_before(batches, seq_ids, gaps)

    monkeypatch.setattr(VideoCVAE, "forward", recording_forward)
    monkeypatch.setattr(SequenceBatches, "frames_before", recording_before)
    images = torch.from_numpy(load_split(mini_data, "train").images).float() / 255     # (N, 3, H, W)
    cfg = smoke_config(mini_data, tmp_path / "gap", num_epoch=1, steps_per_epoch=3, train_vi_len=8,
                       appearance_memory=True, memory_gap=20)
    train_mod.train(cfg, progress=False, log=lambda *a: None)
    assert len(forwards) == len(asked) == 3
    for (first, memory), (seq_ids, gaps) in zip(forwards, asked):
        assert ((gaps >= 0) & (gaps <= 20)).all()
        torch.testing.assert_close(first, images[seq_ids * 8])                    # the clips' first frames
        torch.testing.assert_close(memory, images[(seq_ids * 8 - gaps).clamp(min=0)])   # their memories
    assert len({int(g) for _, gaps in asked for g in gaps}) > 1                 # drawn, not one fixed gap
    forwards.clear()
    train_mod.train(smoke_config(mini_data, tmp_path / "plain", num_epoch=1, steps_per_epoch=1, train_vi_len=8,
                                 appearance_memory=True), progress=False, log=lambda *a: None)
    assert forwards[0][1] is None                            # no gap: the clip's own first frame


def test_the_memory_gap_needs_the_memory_and_is_off_by_default(mini_data, tmp_path, capsys):
    assert make_config().memory_gap == 0 and make_config("template").memory_gap == 0
    quick = make_config("quick")                              # on with quick's memory (bf16 CPUs), else off
    assert quick.memory_gap == (300 if quick.appearance_memory else 0)
    from lab4.config import check_config
    off = make_config("quick", appearance_memory=False, DR=str(mini_data), save_root=str(tmp_path))
    check_config(off)                                         # the memory off: quick's options of it go too
    assert (off.memory_gap, off.memory_follows_pose) == (0, False)
    assert lab4_train(["--DR", str(mini_data), "--save_root", str(tmp_path / "r"), "--preset", "smoke",
                       "--device", "cpu", "--memory_gap", "50"]) == 2
    err = capsys.readouterr().err
    assert "--memory_gap 50: expected --appearance_memory too" in err and err.count("\n") == 1


# ---- the fed-back frame ------------------------------------------------------------------------------
def test_detached_feedback_stops_the_gradient_at_the_fed_back_frame_only():
    x, p = batch(T=4)
    eps = torch.randn(2, 3, 4, 32, 64)

    def grad_of_last_frame(detach):
        torch.manual_seed(0)
        model = VideoCVAE(**SMALL, detach_feedback=detach)
        out = model(x, p, False, eps)[0]
        out[:, -1].sum().backward()
        return model.frame_transformation[0].conv1.weight.grad.clone(), out.detach()

    full, out_full = grad_of_last_frame(False)
    detached, out_detached = grad_of_last_frame(True)
    torch.testing.assert_close(out_full, out_detached)                 # the same forward pass
    assert not torch.allclose(full, detached)                          # less gradient flows back in time
    assert detached.abs().sum() > 0                                    # the encoder still learns


def test_feedback_noise_perturbs_training_only_without_teacher_forcing():
    x, p = batch()
    eps = torch.randn(2, 4, 4, 32, 64)
    torch.manual_seed(0)
    plain = VideoCVAE(**SMALL)
    noisy = copy.deepcopy(plain)
    noisy.feedback_noise = 0.05
    torch.testing.assert_close(noisy(x, p, True, eps)[0], plain(x, p, True, eps)[0])
    assert not torch.allclose(noisy(x, p, False, eps)[0], plain(x, p, False, eps)[0])
    torch.testing.assert_close(noisy.rollout(x[:, 0], p, seeds=[0, 1]), plain.rollout(x[:, 0], p, seeds=[0, 1]))


# ---- the long clip late in training ---------------------------------------------------------------------
def test_the_long_clip_is_the_last_epochs_with_the_frames_per_step_kept():
    quick = make_config("quick")                         # 12- or 16-frame clips, as the CPU decides
    assert all(clip_of_epoch(quick, e) == (quick.train_vi_len, 2) for e in range(quick.num_epoch))   # off
    longer = make_config("quick", train_vi_len=16, long_clip=32)
    assert [clip_of_epoch(longer, e) for e in range(3)] == [(16, 2), (16, 2), (32, 1)]
    two = make_config("quick", train_vi_len=16, long_clip=24, long_clip_epochs=2, batch_size=4)
    assert [clip_of_epoch(two, e) for e in range(3)] == [(16, 4), (24, 2), (24, 2)]


@pytest.mark.parametrize("flags,expected", [(["--long_clip", "8"], "--long_clip 8: expected 0 (off) or more frames "
                                                                   "than --train_vi_len 8"),
                                            (["--long_clip", "400"], "fewer than --long_clip 400"),
                                            (["--long_clip", "16", "--long_clip_epochs", "0"], "--long_clip_epochs 0")])
def test_a_long_clip_that_cannot_be_is_one_line(mini_data, tmp_path, capsys, flags, expected):
    args = ["--DR", str(mini_data), "--save_root", str(tmp_path / "run"), "--preset", "smoke", "--device", "cpu",
            "--train_vi_len", "8", "--num_epoch", "1", "--steps_per_epoch", "1", *flags]
    assert lab4_train(args) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1
    assert not (tmp_path / "run" / "last.ckpt").exists()


@pytest.mark.slow
def test_a_run_with_a_long_clip_trains_its_last_epoch_on_long_clips(mini_data, tmp_path, smoke_config, monkeypatch):
    import lab4.train as train_mod
    shapes, real_loss = [], train_mod.cvae_loss
    monkeypatch.setattr(train_mod, "cvae_loss", lambda x_hat, x, *a, **k: shapes.append(tuple(x.shape[:2]))
                        or real_loss(x_hat, x, *a, **k))
    cfg = smoke_config(mini_data, tmp_path, num_epoch=2, steps_per_epoch=2, train_vi_len=8, long_clip=16)
    m = train_mod.train(cfg, progress=False, log=lambda *a: None)["metrics"]
    assert shapes == [(2, 7), (2, 7), (1, 15), (1, 15)]               # (batch, frames predicted) per step
    assert m["steps"].tolist() == [2, 2] and np.isfinite(m["loss"]).all()


# ---- --average ---------------------------------------------------------------------------------------
def test_predict_test_average_is_the_mean_of_the_rollouts_with_successive_seeds(mini_data):
    torch.manual_seed(0)
    model = VideoCVAE(**SMALL).eval()
    test = load_split(mini_data, "test", workers=1)
    test = type(test)("test", test.images[:2], test.labels[:2, :12])          # 2 sequences, 12 frames
    one = predict_test(model, test, seed=3, progress=False)
    assert torch.equal(predict_test(model, test, seed=3, progress=False, average=1), one)
    runs = [predict_test(model, test, seed=s, progress=False) for s in (3, 4, 5)]
    mean = predict_test(model, test, seed=3, progress=False, average=3)
    torch.testing.assert_close(mean, torch.stack(runs).mean(0))
    twice = predict_test(model, test, seed=3, progress=False, average=1, more_models=[model])
    torch.testing.assert_close(twice, one)                             # the same checkpoint twice: its rollout


@pytest.mark.slow
def test_lab4_test_average_writes_the_mean_and_reports_it_on_the_val_video(mini_data, smoke_run, tmp_path, capsys,
                                                                          short_test_sequences, monkeypatch):
    """The command line: the val video's drift beside its total, its mean of K rollouts against one, and a
    submission of means (that predict_test's mean is the mean of the rollouts is proven above). The
    test sequences are cut short here: the full 630-frame val video is the part under test. Its SSIM is
    taken in float32 (float64 takes ~15 s per 630 frames on one core; SSIM is tested in test_prior)."""
    import lab4.evaluate
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    def ssim_float32(pred, gt):
        a, b = (torch.from_numpy(to_uint8(x)).float() / 255.0 for x in (pred, gt))      # (T, 3, H, W) each
        return ssim(a, b, data_range=1.0, reduction="none").numpy()

    monkeypatch.setattr(lab4.evaluate, "ssim_per_frame", ssim_float32)
    assert lab4_test(["--DR", str(mini_data), "--device", "cpu", "--ckpt_path", str(smoke_run / "last.ckpt"),
                      "--val", "--val_vi_len", "630", "--save_root", str(tmp_path), "--average", "2"]) == 0
    out = capsys.readouterr().out
    assert "451-600" in out and "drift" in out                          # the drift beside the total
    one, mean = (float(v) for v in re.search(r"one rollout \(seed 1\) ([\d.]+) dB; of the mean of 2 rollouts ([\d.]+)",
                                             out).groups())
    written = pd.read_csv(tmp_path / "val" / "psnr_per_frame.csv")["psnr"][1:601].mean()
    assert abs(written - mean) < 1e-3 and mean != one                  # the val outputs are the mean's
    assert "each the mean of 2 rollouts" in out
    sub = pd.read_csv(tmp_path / "submission.csv")
    assert sub.shape == (5 * short_test_sequences, 6145)


@pytest.mark.parametrize("flags,expected", [(["--average", "0"], "--average 0: expected a positive"),
                                            (["--average", "4", "--z", "mean"], "expected --z sample")])
def test_lab4_test_average_refuses_what_cannot_average(mini_data, smoke_run, tmp_path, capsys, flags, expected):
    assert lab4_test(["--DR", str(mini_data), "--save_root", str(tmp_path), "--device", "cpu",
                      "--ckpt_path", str(smoke_run / "last.ckpt"), *flags]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1
    assert not (tmp_path / "submission.csv").exists()


# ---- the held-out 'travel' style -----------------------------------------------------------------
def test_the_demo_style_is_the_synthetic_data_as_before_and_travel_moves_more():
    from dataclasses import replace
    v, demo = make_video(300, (7, 2, 0)), make_video(300, (7, 2, 0), "demo")
    assert np.array_equal(v.params, demo.params) and replace(v, params=None) == replace(demo, params=None)
    travel_per_style = {}
    for style in ("demo", "travel"):
        params = np.concatenate([_choreography(600, np.random.default_rng([s, 1]), 1.0, STYLES[style])
                                 for s in range(8)])
        travel_per_style[style] = float(np.abs(np.diff(params[:, 0])).sum())   # hip travel across the frame
    assert travel_per_style["travel"] > 1.3 * travel_per_style["demo"], travel_per_style
    travel = make_video(300, (7, 2, 0), "travel")
    lum = lambda c: sum(c) / 3                                         # noqa: E731
    assert lum(travel.shirt) - lum(travel.trousers) > lum(v.shirt) - lum(v.trousers)
    assert len(STYLES["travel"].weights) == len(MOVES) and abs(sum(STYLES["travel"].weights) - 1) < 1e-9


def test_the_stripes_style_stripes_the_shirt_and_leaves_the_plain_styles_as_they_were():
    from lab4.synth import SHIRT_KEY, render_frame
    for style in ("demo", "travel"):
        assert make_video(50, (7, 2, 0), style).stripes is None
    plain, striped = make_video(50, (13, 2, 0), "travel"), make_video(50, (13, 2, 0), "stripes")
    assert np.array_equal(plain.params, striped.params)        # same choreography, only the look differs
    colour, period = striped.stripes
    assert 0.07 <= period <= 0.10 and sum(colour) < sum(striped.shirt) - 200   # dark stripes on a light shirt
    frame = np.asarray(render_frame(striped.params[0], striped, 256, 512)).reshape(-1, 3)
    assert not (frame == SHIRT_KEY).all(-1).any()               # the key colour never reaches a frame
    near = lambda c: (np.abs(frame.astype(int) - np.array(c)).max(-1) <= 30).sum()   # noqa: E731
    shirt_px, stripe_px = near(striped.shirt), near(colour)
    assert shirt_px > 200 and stripe_px > 200, (shirt_px, stripe_px)   # both bands drawn (lit +-12%)
