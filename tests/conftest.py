"""Shared fixtures: the mini synthetic dataset (generated once per session) and one smoke run."""
import shutil
import signal
from types import SimpleNamespace

import pytest

from lab4.config import make_config
from lab4.synth import generate_dataset


@pytest.fixture(scope="session")
def mini_data(tmp_path_factory):
    """The `mini` synthetic dataset in the Kaggle layout (320 train, 630 val, 5 x 630 test)."""
    return generate_dataset(tmp_path_factory.mktemp("mini") / "data", "mini", seed=0, progress=False)


@pytest.fixture
def copy_of_mini(mini_data, tmp_path):
    """A private copy of the PNGs (without the decoded-frame cache) for tests that corrupt files."""
    dst = tmp_path / "data"
    shutil.copytree(mini_data, dst, ignore=shutil.ignore_patterns(".lab4_cache"))
    return dst


def smoke_config(DR, save_root, **overrides):
    """The smoke preset on the CPU with tiny epochs and a short validation rollout."""
    values = dict(DR=str(DR), save_root=str(save_root), device="cpu", num_epoch=2,
                  steps_per_epoch=3, val_vi_len=8, train_vi_len=8)
    values.update(overrides)
    return make_config("smoke", **values)


@pytest.fixture(name="smoke_config", scope="session")
def smoke_config_fixture():
    """The helper above, for tests: smoke_config(DR, save_root, **overrides) -> TrainConfig."""
    return smoke_config


@pytest.fixture(scope="session")
def smoke_run(mini_data, tmp_path_factory):
    """One finished smoke training (2 epochs x 3 steps); returns its save_root."""
    from lab4.train import train
    save_root = tmp_path_factory.mktemp("smoke_run")
    train(smoke_config(mini_data, save_root), progress=False, log=lambda *a: None)
    return save_root


@pytest.fixture
def ctrl_c_at_optimizer_step(monkeypatch):
    """The user pressing Ctrl-C during training, at a chosen moment.
    arm(n, presses=1): the next train() gets `presses` SIGINTs right after its n-th optimizer.step()
    (counted from 1, before the step is recorded); disarm(): the real optimizer again."""
    import lab4.train as train_mod
    build = train_mod.build_optimizer

    def arm(n: int, presses: int = 1) -> None:
        def build_pressing(cfg, model):
            opt = build(cfg, model)
            real_step, calls = opt.step, []

            def step(*a, **k):
                out = real_step(*a, **k)
                calls.append(1)
                if len(calls) == n:
                    for _ in range(presses):
                        signal.raise_signal(signal.SIGINT)
                return out
            opt.step = step
            return opt
        monkeypatch.setattr(train_mod, "build_optimizer", build_pressing)

    def disarm() -> None:
        monkeypatch.setattr(train_mod, "build_optimizer", build)

    return SimpleNamespace(arm=arm, disarm=disarm)


@pytest.fixture
def short_test_sequences(monkeypatch):
    """lab4-test's test split cut to 24 frames per sequence, for tests whose subject is elsewhere (the
    val video, the prior): the 5 x 630-frame test rollout, its CSV and GIFs are tested in test_train."""
    import lab4.data
    real_load_split = lab4.data.load_split

    def short_test_split(DR, split, *a, **k):
        loaded = real_load_split(DR, split, *a, **k)
        return type(loaded)(split, loaded.images, loaded.labels[:, :24]) if split == "test" else loaded

    monkeypatch.setattr(lab4.data, "load_split", short_test_split)
    return 24
