"""Tests of the synthetic dataset generator (lab4/synth.py): layout, look, determinism."""
import json
import re

import numpy as np
import pytest

from lab4.errors import Lab4Error
from PIL import Image

from lab4.cli import synth_main as main
from lab4.synth import PRESETS, X, SynthPreset, generate_dataset, make_video, render_frame, render_video

NAME = re.compile(r"frame(\d{6})\.png")


def numbers(folder):
    """Frame numbers of the PNGs in `folder`, in numeric order; every name must be frame%06d.png."""
    names = [p.name for p in folder.iterdir()]
    assert all(NAME.fullmatch(n) for n in names), names[:5]
    return sorted(int(NAME.fullmatch(n).group(1)) for n in names)


def to_model(path):
    """The model loader's resize: (3, 32, 64) uint8."""
    img = Image.open(path).convert("RGB").resize((64, 32), Image.BILINEAR)
    return np.asarray(img, np.uint8).transpose(2, 0, 1)


def to_model_small(img):
    return np.asarray(img.resize((64, 32), Image.BILINEAR)).astype(int)


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("mini") / "data", "mini", seed=0,
                            workers=2, progress=False)


@pytest.fixture
def tiny(monkeypatch):
    """A preset small enough to generate twice per test."""
    monkeypatch.setitem(PRESETS, "tiny", SynthPreset(70, 30, 2, 40, 48, 96))
    return "tiny"


def test_presets():
    assert PRESETS["full"] == SynthPreset(23410, 630, 5, 630, 512, 1024)
    for p in PRESETS.values():
        assert p.n_val == 630 and p.test_len == 630 and p.n_test == 5


def test_layout_and_counts(mini):
    cfg = PRESETS["mini"]
    assert numbers(mini / "train/train_img") == list(range(cfg.n_train))
    assert numbers(mini / "train/train_label") == list(range(cfg.n_train))
    assert numbers(mini / "val/val_img") == numbers(mini / "val/val_label") == list(range(630))
    assert sorted(p.name for p in (mini / "test/test_img").iterdir()) == [str(k) for k in range(5)]
    for k in range(5):
        assert numbers(mini / f"test/test_img/{k}") == [0]
        assert numbers(mini / f"test/test_label/{k}") == list(range(630))
    # every image has its label under the same name in <split>_label
    for img in (mini / "train/train_img").iterdir():
        assert (mini / "train/train_label" / img.name).is_file()
    assert not list(mini.rglob("*.tmp")) and not list(mini.rglob(".*"))
    info = json.loads((mini / "synth.json").read_text())
    assert info["complete"] and info["preset"] == "mini" and info["seed"] == 0
    assert (info["height"], info["width"], info["n_train"]) == (128, 256, 320)
    assert sum(info["train_video_lengths"]) == 320


def figure_mask(f):
    """Pixels of the figure: far from their row's median (the studio is constant along a row but
    for a mild lighting gradient)."""
    return np.abs(f - np.median(f, axis=1, keepdims=True)).sum(2) > 60


def test_frame_and_label_look(mini):
    frame = Image.open(mini / "train/train_img/frame000123.png")
    label = Image.open(mini / "train/train_label/frame000123.png")
    assert frame.mode == label.mode == "RGB" and frame.size == label.size == (256, 128)
    f, lab = np.asarray(frame).astype(int), np.asarray(label).astype(int)
    assert (lab == 255).all(2).mean() > 0.95                      # skeleton on white
    assert len(np.unique(lab.reshape(-1, 3), axis=0)) > 8         # multi-coloured limbs
    assert f[:10].mean() > 215                                    # a light wall at the top
    assert f[-10:].mean() < f[:10].mean() - 15                    # a greyer floor at the bottom
    shirt = (f[..., 2] > 150) & (f[..., 2] - f[..., 0] > 30)      # light-blue shirt
    assert shirt.sum() > 100
    # the skeleton lies on the figure: label bbox within the (slightly grown) figure bbox
    ys, xs = np.nonzero(figure_mask(f))
    ly, lx = np.nonzero((lab < 250).any(2))
    assert xs.min() - 6 <= lx.min() and lx.max() <= xs.max() + 6
    assert ys.min() - 6 <= ly.min() and ly.max() <= ys.max() + 6
    assert 0.4 < (ys.max() - ys.min()) / 128 < 0.85                # tall enough for 32x64


def test_studio_varies_per_video_and_the_floor_is_never_white():
    videos = [make_video(10, (5, i)) for i in range(12)]
    for v in videos:
        wall, floor = np.array(v.studio[0]), np.array(v.studio[1])
        assert (wall - floor).mean() >= 20 and floor.max() < 235
        assert v.studio[2] < v.ground_frac                         # feet stand on the floor
    for field in ("studio", "light", "height_frac", "limb", "shadow"):
        assert len({repr(getattr(v, field)) for v in videos}) >= 6, field
    assert any(v.shadow == 0 for v in videos) and any(v.shadow > 0 for v in videos)   # shadow optional


def test_the_dancer_travels_across_the_frame():
    spans = [np.ptp(make_video(630, (6, i)).params[:, X]) for i in range(10)]
    assert max(spans) > 0.45 and min(spans) < max(spans)           # walks/runs far, not always
    v = make_video(630, (6, int(np.argmax(spans))))
    frames = [np.asarray(render_frame(p, v, 64, 128)).astype(int) for p in v.params[::30]]
    centres = [np.nonzero(figure_mask(f))[1].mean() / 128 for f in frames]
    assert np.ptp(centres) > 0.3                                   # seen in the pixels too


def test_limbs_are_thin_at_model_resolution():
    """At 32x64 the trousers' legs and the sleeves are about one or two pixels wide, as in the real data."""
    v = make_video(1, (8, 0))
    f = to_model_small(render_frame(v.params[0], v, 512, 1024))
    dark = (f.sum(2) < 300)                                        # trousers (dark) pixels per row
    widths = dark.sum(1)[dark.any(1)]
    assert 1 <= np.median(widths) <= 5                             # two legs of 1-2 px


def test_solution_matches_first_frames(mini):
    sol = np.load(mini / "test_solution.npy")
    assert sol.shape == (5, 630, 3, 32, 64) and sol.dtype == np.uint8
    for k in range(5):
        assert np.array_equal(sol[k, 0], to_model(mini / f"test/test_img/{k}/frame000000.png"))
    assert not np.array_equal(sol[0, 0], sol[1, 0])               # different videos
    # smooth motion: neighbouring frames are much closer than frames far apart
    x = sol.astype(float)
    near = np.abs(x[:, 1:] - x[:, :-1]).mean()
    far = np.abs(x[:, 300:] - x[:, :-300]).mean()
    assert near < far / 2


def test_deterministic_and_worker_independent(tmp_path, tiny):
    a = generate_dataset(tmp_path / "a", tiny, seed=3, workers=1, progress=False)
    b = generate_dataset(tmp_path / "b", tiny, seed=3, workers=2, progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    assert len(files) == 70 * 2 + 30 * 2 + 2 * (1 + 40)
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert np.array_equal(np.load(a / "test_solution.npy"), np.load(b / "test_solution.npy"))
    c = generate_dataset(tmp_path / "c", tiny, seed=4, workers=2, progress=False)
    rel = "val/val_img/frame000005.png"
    assert (a / rel).read_bytes() != (c / rel).read_bytes()


def test_render_video():
    f1, l1 = render_video(6, seed=1, height=64, width=128)
    f2, _ = render_video(6, seed=1, height=64, width=128)
    f3, _ = render_video(6, seed=2, height=64, width=128)
    assert f1.shape == l1.shape == (6, 64, 128, 3) and f1.dtype == l1.dtype == np.uint8
    assert np.array_equal(f1, f2) and not np.array_equal(f1, f3)


def test_out_dir_rules(tmp_path, tiny, monkeypatch):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(Lab4Error, match="--out .* not empty"):      # library code: not SystemExit
        generate_dataset(foreign, tiny, progress=False)
    assert (foreign / "notes.txt").read_text() == "mine"
    assert main(["--out", str(foreign), "--preset", tiny, "--no-progress"]) == 2      # the CLI: one line
    # a previous synth output is replaced, leaving no stale frames behind
    out = generate_dataset(tmp_path / "d", tiny, progress=False)
    (out / "train/train_img/frame009999.png").write_bytes(b"stale")
    monkeypatch.setitem(PRESETS, tiny, SynthPreset(20, 30, 1, 40, 48, 96))
    generate_dataset(out, tiny, progress=False, workers=1)
    assert numbers(out / "train/train_img") == list(range(20))
    assert np.load(out / "test_solution.npy").shape == (1, 40, 3, 32, 64)


def test_cli(tmp_path, capsys, tiny):
    assert main(["--out", str(tmp_path / "o"), "--preset", tiny, "--height", "40", "--width",
                 "80", "--workers", "2", "--no-progress"]) == 0
    assert Image.open(tmp_path / "o/val/val_img/frame000000.png").size == (80, 40)
    for bad in (["--height", "31"], ["--width", "-4"], ["--workers", "0"], ["--preset", "huge"]):
        with pytest.raises(SystemExit) as e:
            main(["--out", str(tmp_path / "x"), *bad])
        assert e.value.code == 2
        assert bad[0] in capsys.readouterr().err
    with pytest.raises(ValueError, match="--height"):
        generate_dataset(tmp_path / "y", tiny, height=0, progress=False)
