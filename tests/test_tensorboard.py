"""--tensorboard: event files that TensorBoard's own reader reads back, equal to metrics.csv."""
import sys

import numpy as np
import pandas as pd
import pytest

from lab4.errors import Lab4Error
from lab4.train import train

QUIET = dict(progress=False, log=lambda *a: None)
pytest.importorskip("tensorboard", reason="the optional tensorboard package (pip install -e '.[dev]')")


def read_events(save_root):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(save_root / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


@pytest.mark.slow
def test_events_hold_the_metrics_and_validation_frames(mini_data, tmp_path, smoke_config):
    train(smoke_config(mini_data, tmp_path, num_epoch=2, tensorboard=True), **QUIET)
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    acc = read_events(tmp_path)
    for tag, column in (("train/loss", "loss"), ("schedule/lr", "lr"), ("val/psnr", "val_psnr"),
                        ("val/copy_first_psnr", "copy_first_psnr")):
        events = acc.Scalars(tag)
        assert [e.step for e in events] == metrics["epoch"].tolist()
        np.testing.assert_allclose([e.value for e in events], metrics[column], rtol=1e-5)
    images = acc.Images("val/prediction|truth|pose")
    assert [im.step for im in images] == [1, 2] and images[0].width > 3 * 64


@pytest.mark.slow
def test_a_resumed_run_logs_each_epoch_once(mini_data, tmp_path, smoke_config):
    train(smoke_config(mini_data, tmp_path, num_epoch=1, tensorboard=True), **QUIET)
    train(smoke_config(mini_data, tmp_path, num_epoch=3, tensorboard=True, ckpt_path=str(tmp_path / "last.ckpt")),
          **QUIET)
    assert [e.step for e in read_events(tmp_path).Scalars("train/loss")] == [1, 2, 3]


def test_without_the_package_it_is_one_line_before_anything_is_written(mini_data, tmp_path, smoke_config,
                                                                       monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)     # import fails
    with pytest.raises(Lab4Error, match="--tensorboard: the tensorboard package is not installed"):
        train(smoke_config(mini_data, tmp_path / "run", tensorboard=True), **QUIET)
    assert not (tmp_path / "run").exists()
