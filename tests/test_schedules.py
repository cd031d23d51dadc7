"""Per-epoch schedules: KL beta (Fu et al.'s cyclical annealing and its fixes), teacher-forcing
ratio, learning rate (spec section 3)."""
import numpy as np
import pytest

from lab4.config import TrainConfig, make_config
from lab4.schedules import (frange_cycle_linear, kl_beta_schedule, learning_rate, teacher_forcing_coin,
                            teacher_forcing_ratio)


def beta_cfg(kind="Cyclical", n=70, cycles=10, ratio=1.0, reach=True, **kw):
    return TrainConfig(num_epoch=n, kl_anneal_type=kind, kl_anneal_cycle=cycles, kl_anneal_ratio=ratio,
                       kl_reach_stop=reach, **kw)


# ---- frange_cycle_linear: Fu et al.'s code, traps included -----------------------------------
def test_frange_template_case_never_reaches_stop():
    b = frange_cycle_linear(70, 0.0, 1.0, 10, 1)
    assert len(b) == 70
    assert b.max() == pytest.approx(6 / 7)
    assert (b < 1.0).all()


def test_frange_is_exactly_zero_at_every_cycle_start():
    b = frange_cycle_linear(70, 0.0, 1.0, 10, 1)
    assert (b[0:70:7] == 0.0).all()
    assert (b[1:70:7] > 0).all()
    np.testing.assert_allclose(b[:7], np.arange(7) / 7)


def test_frange_small_case_by_hand():
    # period 4, rising half: 0, 0.5, 1, then hold at 1
    np.testing.assert_allclose(frange_cycle_linear(8, 0.0, 1.0, 2, 0.5), [0, .5, 1, 1, 0, .5, 1, 1])


# ---- kl_beta_schedule ------------------------------------------------------------------------
def test_cyclical_reach_stop_hits_one_in_every_cycle():
    b = kl_beta_schedule(beta_cfg("Cyclical", reach=True))
    assert len(b) == 70
    for c in range(10):
        cycle = b[7 * c:7 * c + 7]
        assert cycle[0] == 0.0 and cycle.max() == 1.0
        np.testing.assert_allclose(cycle, np.arange(7) / 6)


def test_cyclical_reach_stop_small_case_by_hand():
    # period 4, ratio 0.5: two rising steps 0 -> 1 inclusive, then hold
    b = kl_beta_schedule(beta_cfg("Cyclical", n=8, cycles=2, ratio=0.5, reach=True))
    np.testing.assert_allclose(b, [0, 1, 1, 1, 0, 1, 1, 1])
    b = kl_beta_schedule(beta_cfg("Cyclical", n=12, cycles=2, ratio=0.5, reach=True))
    np.testing.assert_allclose(b, [0, .5, 1, 1, 1, 1, 0, .5, 1, 1, 1, 1])


@pytest.mark.parametrize("n", [2, 3, 5])
def test_reach_stop_reaches_one_with_more_cycles_than_epochs(n):
    assert kl_beta_schedule(beta_cfg("Cyclical", n=n, cycles=10, reach=True)).max() == 1.0


def test_smoke_preset_weighs_the_kl_term():
    assert kl_beta_schedule(make_config("smoke")).max() > 0


def test_cyclical_without_reach_stop_is_fu_et_al():
    cfg = beta_cfg("Cyclical", reach=False)
    np.testing.assert_array_equal(kl_beta_schedule(cfg), frange_cycle_linear(70, 0.0, 1.0, 10, 1.0))
    cfg = beta_cfg("Cyclical", n=8, cycles=2, ratio=0.5, reach=False)
    np.testing.assert_allclose(kl_beta_schedule(cfg), [0, .5, 1, 1, 0, .5, 1, 1])


def test_monotonic_is_one_ramp_to_one():
    b = kl_beta_schedule(beta_cfg("Monotonic", n=10, cycles=10, ratio=1.0, reach=True))
    np.testing.assert_allclose(b, np.arange(10) / 9)
    assert b[0] == 0.0 and b[-1] == 1.0 and (np.diff(b) >= 0).all()
    b = kl_beta_schedule(beta_cfg("Monotonic", n=8, cycles=10, ratio=0.5, reach=True))
    np.testing.assert_allclose(b, [0, 1 / 3, 2 / 3, 1, 1, 1, 1, 1])


def test_monotonic_ignores_the_cycle_count():
    a = kl_beta_schedule(beta_cfg("Monotonic", n=20, cycles=10, ratio=0.5))
    b = kl_beta_schedule(beta_cfg("Monotonic", n=20, cycles=3, ratio=0.5))
    np.testing.assert_array_equal(a, b)
    assert (np.diff(a) >= 0).all() and a[0] == 0.0


def test_none_is_all_ones():
    np.testing.assert_array_equal(kl_beta_schedule(beta_cfg("None", n=5)), np.ones(5))


def test_beta_min_floors_the_schedule():
    b = kl_beta_schedule(beta_cfg("Cyclical", n=8, cycles=2, ratio=0.5, reach=False, kl_beta_min=0.25))
    np.testing.assert_allclose(b, [.25, .5, 1, 1, .25, .5, 1, 1])


def test_unknown_anneal_type_names_the_flag():
    with pytest.raises(ValueError, match="--kl_anneal_type.*'Linear'"):
        kl_beta_schedule(beta_cfg("Linear"))


@pytest.mark.parametrize("bad", [dict(cycles=0), dict(ratio=0.0), dict(ratio=1.5)])
def test_bad_cycle_or_ratio_is_refused(bad):
    with pytest.raises(ValueError, match="kl_anneal"):
        kl_beta_schedule(beta_cfg("Cyclical", **bad))


# ---- teacher forcing ---------------------------------------------------------------------------
def test_teacher_forcing_template_decay():
    cfg = TrainConfig(tfr=1.0, tfr_sde=10, tfr_d_step=0.1)
    tfr = [teacher_forcing_ratio(cfg, e) for e in range(30)]
    assert tfr[:10] == [1.0] * 10
    assert tfr[10] == pytest.approx(0.9)
    assert tfr[14] == pytest.approx(0.5)
    assert tfr[19] == 0.0
    assert tfr[19:] == [0.0] * 11                       # exactly 0, never negative
    assert all(a >= b for a, b in zip(tfr, tfr[1:]))


def test_teacher_forcing_zero_stays_zero():
    cfg = TrainConfig(tfr=0.0)
    assert {teacher_forcing_ratio(cfg, e) for e in range(40)} == {0.0}


def test_batch_coin_compares_the_draw_with_the_ratio():
    cfg = TrainConfig(tfr=0.3, tf_coin="batch")
    assert teacher_forcing_coin(cfg, 0, 0.29) is True
    assert teacher_forcing_coin(cfg, 0, 0.3) is False
    late = TrainConfig(tfr=1.0, tfr_sde=0, tfr_d_step=0.5, tf_coin="batch")     # ratio 0.5 at epoch 0
    assert [teacher_forcing_coin(late, 0, c) for c in (0.49, 0.51)] == [True, False]


def test_epoch_coin_is_one_seeded_toss_per_epoch():
    cfg = TrainConfig(tfr=0.5, tfr_sde=1000, tf_coin="epoch", seed=3)
    coins = [teacher_forcing_coin(cfg, e, 0.0) for e in range(200)]
    assert all(teacher_forcing_coin(cfg, e, 0.99) == coins[e] for e in range(200))   # batch draw ignored
    assert coins == [teacher_forcing_coin(cfg, e, 0.5) for e in range(200)]          # reproducible
    assert 0.35 < np.mean(coins) < 0.65
    other_seed = TrainConfig(tfr=0.5, tfr_sde=1000, tf_coin="epoch", seed=4)
    assert coins != [teacher_forcing_coin(other_seed, e, 0.0) for e in range(200)]


@pytest.mark.parametrize("tfr,expected", [(1.0, True), (0.0, False)])
def test_epoch_coin_at_ratio_one_and_zero(tfr, expected):
    cfg = TrainConfig(tfr=tfr, tfr_sde=1000, tf_coin="epoch")
    assert {teacher_forcing_coin(cfg, e, 0.5) for e in range(50)} == {expected}


def test_unknown_coin_names_the_flag():
    with pytest.raises(ValueError, match="--tf_coin 'step'"):
        teacher_forcing_coin(TrainConfig(tf_coin="step"), 0, 0.5)


def test_template_preset_tosses_per_epoch():
    assert make_config("template").tf_coin == "epoch" and make_config().tf_coin == "batch"


# ---- learning rate ---------------------------------------------------------------------------
def test_multistep_is_the_template_schedule():
    cfg = TrainConfig(lr=1e-3, lr_scheduler="multistep")
    lrs = [learning_rate(cfg, e) for e in range(8)]
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-4, 1e-5, 1e-5, 1e-5])


def test_cosine_endpoints_and_midpoint():
    cfg = make_config(lr=1e-3, min_lr=1e-5, lr_scheduler="cosine", num_epoch=10)
    assert learning_rate(cfg, 0) == pytest.approx(1e-3)
    assert learning_rate(cfg, 5) == pytest.approx((1e-3 + 1e-5) / 2)
    assert learning_rate(cfg, 10) == pytest.approx(1e-5)
    lrs = [learning_rate(cfg, e) for e in range(11)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_constant_lr():
    cfg = make_config(lr=2e-3, lr_scheduler="constant")
    assert {learning_rate(cfg, e) for e in range(20)} == {2e-3}


def test_unknown_lr_scheduler_names_the_flag():
    with pytest.raises(ValueError, match="--lr_scheduler"):
        learning_rate(make_config(lr_scheduler="step"), 0)
