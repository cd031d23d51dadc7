"""The benchmarks' reference (benchmarks/reference.py, the template's way) computes what the
package computes, on tiny inputs: same loader tensors, same training loss and gradients, same
rollout for the same noise, same submission.csv. So a benchmark ratio compares equal work."""
import copy
import pathlib
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.reference import (TemplateDataset, TemplateTestDataset, template_forward,  # noqa: E402
                                  template_predict_test, template_rollout, template_train_step,
                                  template_write_submission)
from lab4.config import SEQ_LEN
from lab4.data import SequenceBatches, load_split  # noqa: E402
from lab4.infer import predict_test, write_test_outputs  # noqa: E402
from lab4.model import VideoCVAE, cvae_loss  # noqa: E402

TINY = dict(F_dim=16, L_dim=8, N_dim=4, D_out_dim=16)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions: one intra-op thread is ~10-40x faster than several on a shared,
    loaded machine (OpenMP threads spin-wait for each other), and the results do not change."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _png(path: pathlib.Path, rng, h: int, w: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> pathlib.Path:
    """Kaggle layout with random PNGs: 35 train frames (2 sequences of 16 + 3 spare) at 40x72,
    and one test sequence of 630 poses at 8x16 (upscaled; one sequence keeps the test fast)."""
    root = tmp_path_factory.mktemp("tinyds")
    rng = np.random.default_rng(0)
    for i in range(35):
        for kind in ("img", "label"):
            _png(root / "train" / f"train_{kind}" / f"frame{i}.png", rng, 40, 72)  # frame10 after frame9
    for k in range(1):
        _png(root / "test" / "test_img" / str(k) / "frame000000.png", rng, 8, 16)
        for i in range(SEQ_LEN):
            _png(root / "test" / "test_label" / str(k) / f"frame{i:06d}.png", rng, 8, 16)
    return root


def test_loader_items_equal_cache(tiny_root, tmp_path):
    split = load_split(tiny_root, "train", cache_dir=tmp_path / "cache")
    ds = TemplateDataset(tiny_root, video_len=16)
    assert len(ds) == 2
    batches = SequenceBatches(split, 16)
    for k in range(len(ds)):
        imgs, labels = ds[k]
        assert imgs.shape == labels.shape == (16, 3, 32, 64) and imgs.dtype == torch.float32
        want_i = torch.from_numpy(split.images[16 * k:16 * (k + 1)].astype(np.float32)) / 255
        want_l = torch.from_numpy(split.labels[16 * k:16 * (k + 1)].astype(np.float32)) / 255
        torch.testing.assert_close(imgs, want_i, rtol=0, atol=1e-7)
        torch.testing.assert_close(labels, want_l, rtol=0, atol=1e-7)
        x, p = batches.batch(torch.tensor([k]))
        torch.testing.assert_close(x[0], imgs, rtol=0, atol=1e-7)
        torch.testing.assert_close(p[0], labels, rtol=0, atol=1e-7)


@pytest.mark.parametrize("teacher_forcing", [True, False])
@pytest.mark.parametrize("time_chunk,channels_last", [(0, False), (3, True)])
def test_train_step_equals_package(teacher_forcing, time_chunk, channels_last):
    """The template step equals ours, also as lab4.train configures it (time chunks, NHWC)."""
    torch.manual_seed(0)
    ours = VideoCVAE(**TINY)
    ref = copy.deepcopy(ours)
    if hasattr(ours, "time_chunk"):
        ours.time_chunk = time_chunk
    if channels_last:
        ours = ours.to(memory_format=torch.channels_last)
    B, T = 2, 5
    x, p = torch.rand(B, T, 3, 32, 64), torch.rand(B, T, 3, 32, 64)
    eps = torch.randn(B, T - 1, TINY["N_dim"], 32, 64)
    x_hat, mu, logvar = ours(x, p, teacher_forcing, eps)
    loss, _, _ = cvae_loss(x_hat, x[:, 1:], mu, logvar, beta=0.3)
    loss.backward()
    ref_loss, ref_frames = template_forward(ref, x, p, teacher_forcing, beta=0.3, eps=eps)
    ref_loss.backward()
    torch.testing.assert_close(ref_frames, x_hat, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ref_loss, loss, rtol=1e-5, atol=1e-6)
    # fp32 summation order differs (NHWC, chunks): absolute tolerance on the scale of the largest
    # gradient (the pre-BatchNorm conv bias has a true gradient of 0, i.e. pure rounding noise)
    scale = max(1.0, max(float(b.grad.abs().max()) for b in ref.parameters()))
    for (name, a), b in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-5 * scale, msg=name)
    for a, b in zip(ours.buffers(), ref.buffers()):                  # BatchNorm running stats
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    opt = torch.optim.Adam(ref.parameters(), 1e-3)                    # and a full step runs
    assert np.isfinite(template_train_step(ref, opt, x, p, teacher_forcing))


def test_rollout_equals_package_with_same_noise():
    torch.manual_seed(1)
    model = VideoCVAE(**TINY).eval()
    S, T = 3, 12
    first, labels = torch.rand(S, 3, 32, 64), torch.rand(S, T, 3, 32, 64)
    seeds = [7, 1000, 2001]
    ours = model.rollout(first, labels, seeds=seeds, label_chunk=5)
    for s in range(S):
        ref = template_rollout(model, first[s], labels[s], torch.Generator().manual_seed(seeds[s]))
        torch.testing.assert_close(ref, ours[s], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_submission_equals_package(tiny_root, tmp_path):
    torch.manual_seed(2)
    model = VideoCVAE(**TINY).eval()
    loader = torch.utils.data.DataLoader(TemplateTestDataset(tiny_root), batch_size=1, shuffle=False)
    ref_seqs = template_predict_test(model, loader, seed=3)
    template_write_submission(ref_seqs, tmp_path / "ref.csv")
    test = load_split(tiny_root, "test", cache_dir=tmp_path / "cache")
    pred = predict_test(model, test, seed=3, progress=False)
    torch.testing.assert_close(torch.stack(ref_seqs), pred, rtol=1e-4, atol=1e-5)
    write_test_outputs(pred, tmp_path / "ours", gifs=False)
    a = pd.read_csv(tmp_path / "ref.csv").to_numpy()
    b = pd.read_csv(tmp_path / "ours" / "submission.csv").to_numpy()
    assert a.shape == b.shape == (SEQ_LEN, 1 + 3 * 32 * 64)
    assert (a[:, 0] == b[:, 0]).all()
    assert np.abs(a[:, 1:] - b[:, 1:]).max() <= 1            # rint at fp32 rounding boundaries
    assert (a[:, 1:] != b[:, 1:]).mean() < 1e-3
