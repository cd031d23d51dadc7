"""lab4.plots: every figure function returns a Figure with the expected content (Agg backend)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lab4 import plots  # noqa: E402
from lab4.config import TrainConfig  # noqa: E402
from lab4.schedules import kl_beta_schedule, teacher_forcing_ratio  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _metrics(n=4, seed=0):
    r = np.random.default_rng(seed)
    return pd.DataFrame({"epoch": np.arange(1, n + 1), "loss": r.uniform(1, 2, n), "mse": r.uniform(0.01, 0.1, n),
                         "kl": r.uniform(0, 5, n), "beta": np.linspace(0, 1, n), "tfr": np.linspace(1, 0, n),
                         "val_psnr": [np.nan] * (n - 1) + [20.0]})


def test_beta_schedules_plot_draws_the_schedule():
    fig = plots.plot_beta_schedules(num_epoch=20, kl_anneal_cycle=2, kl_anneal_ratio=0.5)
    lines = fig.axes[0].get_lines()
    assert [l.get_label() for l in lines] == ["Cyclical", "Monotonic", "None"]
    cfg = TrainConfig(num_epoch=20, kl_anneal_type="Cyclical", kl_anneal_cycle=2, kl_anneal_ratio=0.5)
    np.testing.assert_allclose(lines[0].get_ydata(), kl_beta_schedule(cfg))
    np.testing.assert_allclose(lines[2].get_ydata(), 1.0)


def test_tfr_schedule_plot():
    fig = plots.plot_tfr_schedule(tfr=1.0, tfr_sde=3, tfr_d_step=0.25, num_epoch=10)
    y = fig.axes[0].get_lines()[0].get_ydata()
    cfg = TrainConfig(tfr=1.0, tfr_sde=3, tfr_d_step=0.25)
    np.testing.assert_allclose(y, [teacher_forcing_ratio(cfg, e) for e in range(10)])


def _data_lines(ax):
    """The axes' curves (seaborn also adds empty proxy lines for the legend)."""
    return [line for line in ax.get_lines() if len(line.get_xdata())]


def test_loss_curves_and_val_psnr_one_line_per_run():
    runs = {"Cyclical": _metrics(), "None": _metrics(seed=1)}
    fig = plots.plot_loss_curves(runs)
    assert len(fig.axes) == 4 and all(len(_data_lines(ax)) == 2 for ax in fig.axes)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["Cyclical", "None"]
    assert len(_data_lines(plots.plot_loss_curves(_metrics()).axes[0])) == 1   # a single frame works too
    fig = plots.plot_val_psnr(runs)
    assert [len(l.get_xdata()) for l in _data_lines(fig.axes[0])] == [1, 1]   # NaN epochs dropped
    with_baseline = {k: m.assign(copy_first_psnr=20.0) for k, m in runs.items()}
    lines = _data_lines(plots.plot_val_psnr(with_baseline).axes[0])
    assert len(lines) == 3 and list(lines[-1].get_ydata()) == [20.0, 20.0]   # one copy-first line


def test_tfr_vs_loss_shares_epochs_and_picks_column():
    runs = {"tf": _metrics(), "no tf": _metrics(seed=1)}
    fig = plots.plot_tfr_vs_loss(runs, column="mse")
    ax, ax2 = fig.axes
    assert len(_data_lines(ax)) == 2 and len(_data_lines(ax2)) == 2
    np.testing.assert_allclose(_data_lines(ax)[0].get_ydata(), runs["tf"]["mse"])
    assert plots.plot_tfr_vs_loss(runs).axes[0].get_ylabel() == "training loss"


def test_psnr_per_frame_annotates_mean_and_min():
    psnr = np.array([100.0, 30, 25, 20, 28])
    fig = plots.plot_psnr_per_frame(psnr, baseline=np.array([100.0, 18, 17, 16, 15]))
    ax = fig.axes[0]
    labels = [l.get_label() for l in ax.get_lines()]
    assert any("mean 25.75" in s for s in labels) and any("copy first frame" in s for s in labels)
    assert any("min 20.00 dB @ frame 3" in t.get_text() for t in ax.texts)


def test_psnr_samples_and_sequence_psnr():
    fig = plots.plot_psnr_samples({"seed 0": np.full(10, 20.0), "seed 1": np.full(10, 21.0)}, np.full(10, 15.0))
    assert len(fig.axes[0].get_lines()) == 3
    psnr = np.tile(np.r_[100.0, np.full(629, 20.0)], 5)
    fig = plots.plot_sequence_psnr(psnr, np.full(3150, 15.0))
    assert len(fig.axes) == 5 and all(len(ax.get_lines()) == 2 for ax in fig.axes)
    assert "20.00" in fig.axes[0].get_lines()[0].get_label()   # frame 0 (capped) is not in the mean


def test_kl_check_plot():
    fig = plots.plot_kl_check([4, 16, 64], [10.5, 9.8, 10.1], 10.0, stderr=[1.0, 0.5, 0.25])
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and any("closed form 10.00" in l.get_label() for l in ax.get_lines())


def test_frame_strips_and_grids():
    video = torch.rand(12, 3, 32, 64)
    fig = plots.frame_strip(video, n=4)
    assert fig.axes[0].get_images()[0].get_array().shape == (32 + 4, 4 * 66 + 2, 3)   # make_grid: 2-px gaps around
    fig = plots.plot_frames_and_poses(video, (video * 255).to(torch.uint8), n=4)
    assert len(fig.axes) == 2
    fig = plots.plot_video_grid({"a": video, "b": video.numpy()}, n=3, title="t")
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "t"


def test_gif_helpers(tmp_path):
    a = np.zeros((5, 3, 32, 64), np.float32)
    b = np.full((7, 3, 32, 64), 255, np.uint8)
    u = plots.frames_to_uint8(a)
    assert u.shape == (5, 32, 64, 3) and u.dtype == np.uint8
    sbs = plots.side_by_side(a, b, scale=2)
    assert sbs.shape == (5, 2 * (32 + 4), 2 * (2 * 66 + 2), 3)
    assert (sbs[:, :4] == 255).all() and (sbs[:, 4:68, 4:132] == 0).all() and (sbs[:, 4:68, 136:264] == 255).all()
    path = plots.save_gif(sbs, tmp_path / "x" / "v.gif")
    assert path.is_file() and path.read_bytes()[:6] in (b"GIF89a", b"GIF87a")
    assert not list(path.parent.glob("*.tmp*"))


def test_scales_follow_the_data():
    runs = {"a": _metrics().assign(kl=[400.0, 420, 390, 380], mse=[0.27, 0.24, 0.22, 0.21])}
    fig = plots.plot_loss_curves(runs)
    assert fig.axes[1].get_yscale() == "linear" and fig.axes[2].get_yscale() == "linear"   # < 1.5 decades
    runs = {"a": _metrics().assign(kl=[0.0, 10, 100, 1000], mse=[1.0, 0.1, 0.01, 0.001])}
    fig = plots.plot_loss_curves(runs)
    assert fig.axes[1].get_yscale() == "log" and fig.axes[2].get_yscale() == "symlog"


def test_capped_frames_do_not_set_the_y_range():
    from lab4.score import PSNR_CAP
    psnr = np.r_[PSNR_CAP, np.full(20, 20.0)]
    base = np.r_[PSNR_CAP, np.full(5, 30.0), np.full(5, PSNR_CAP), np.full(10, 25.0)]
    for fig in (plots.plot_psnr_per_frame(psnr, base), plots.plot_psnr_samples({"s": psnr}, base)):
        assert fig.axes[0].get_ylim()[1] < 40
    fig = plots.plot_sequence_psnr(np.tile(np.r_[PSNR_CAP, np.full(629, 20.0)], 2), np.full(1260, PSNR_CAP), seq_len=630)
    assert fig.axes[0].get_ylim()[1] > 20    # nothing below the cap in the baseline: the model's curve still shows


def test_save_figure_writes_png_only_when_a_folder_is_given(tmp_path):
    fig = plots.plot_val_psnr({"a": _metrics()})
    assert plots.save_figure(fig, None, "nothing.png") is None
    assert not list(tmp_path.iterdir())
    path = plots.save_figure(fig, tmp_path / "figs", "val.png")
    assert path == tmp_path / "figs" / "val.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(path.parent.glob("*.tmp*"))
