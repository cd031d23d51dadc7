"""The dataset on disk (spec section 1): layout, numeric order, labels, the decoded-frame cache."""
import numpy as np
import pytest
import torch
from PIL import Image

import lab4.data as data
from lab4.data import SequenceBatches, label_path, list_frames, load_frame, load_split, resolve_root
from lab4.errors import Lab4Error


def save_png(path, array_or_color, mode="RGB", size=(64, 32)):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(array_or_color, np.ndarray):
        Image.fromarray(array_or_color).save(path)
    else:
        Image.new(mode, size, array_or_color).save(path)
    return path


# ---- shapes ----------------------------------------------------------------------------------
def test_load_split_shapes_and_dtypes(mini_data):
    train, val, test = (load_split(mini_data, s) for s in ("train", "val", "test"))
    assert train.images.shape == train.labels.shape == (320, 3, 32, 64)
    assert val.images.shape == val.labels.shape == (630, 3, 32, 64)
    assert test.images.shape == (5, 3, 32, 64)
    assert test.labels.shape == (5, 630, 3, 32, 64)
    for a in (train.images, train.labels, val.images, val.labels, test.images, test.labels):
        assert a.dtype == np.uint8
    assert train.images.std() > 10 and (train.labels > 250).mean() > 0.5   # frames, white pose images


def test_solution_frame0_is_the_test_first_frame(mini_data):
    test = load_split(mini_data, "test")
    solution = np.load(mini_data / "test_solution.npy")
    assert solution.shape == (5, 630, 3, 32, 64)
    np.testing.assert_array_equal(solution[:, 0], test.images)


def test_unknown_split_is_refused(mini_data):
    with pytest.raises(Lab4Error, match="'dev'"):
        load_split(mini_data, "dev")


# ---- file names and folders ------------------------------------------------------------------
def test_frames_sort_numerically(tmp_path):
    for n in (10, 2, 1, 9):
        save_png(tmp_path / f"frame{n}.png", "white")
    (tmp_path / "notes.txt").write_text("ignored")
    assert [p.name for p in list_frames(tmp_path)] == ["frame1.png", "frame2.png", "frame9.png", "frame10.png"]


def test_an_unexpected_png_name_is_refused(tmp_path):
    save_png(tmp_path / "frame1.png", "white")
    save_png(tmp_path / "cover.png", "white")
    with pytest.raises(Lab4Error, match="cover.png.*frame<N>.png"):
        list_frames(tmp_path)


def test_empty_folder_is_refused(tmp_path):
    with pytest.raises(Lab4Error, match="no PNG"):
        list_frames(tmp_path)


def test_label_path_swaps_the_img_folder():
    assert label_path(data.Path("/d/train/train_img/frame3.png")) == data.Path("/d/train/train_label/frame3.png")
    assert label_path(data.Path("/d/test/test_img/2/frame0.png")) == data.Path("/d/test/test_label/2/frame0.png")
    assert label_path(data.Path("/my_img/val/val_img/frame1.png")) == data.Path("/my_img/val/val_label/frame1.png")
    with pytest.raises(Lab4Error, match="_img"):
        label_path(data.Path("/d/train/images/frame1.png"))


def test_doubled_folder_is_detected(tmp_path):
    inner = tmp_path / "LAB4_Dataset" / "LAB4_Dataset"
    for split in ("train", "val", "test"):
        (inner / split).mkdir(parents=True)
    (tmp_path / "LAB4_Dataset" / "__MACOSX").mkdir()
    assert resolve_root(tmp_path / "LAB4_Dataset") == inner
    assert resolve_root(inner) == inner


def test_doubled_folder_loads(mini_data, tmp_path):
    (tmp_path / "LAB4_Dataset").symlink_to(mini_data, target_is_directory=True)
    val = load_split(tmp_path, "val", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(val.images, load_split(mini_data, "val").images)


def test_doubled_folder_with_only_test_is_detected(tmp_path):
    inner = tmp_path / "LAB4_Dataset" / "LAB4_Dataset"
    (inner / "test").mkdir(parents=True)
    assert resolve_root(tmp_path / "LAB4_Dataset") == inner


def test_folder_without_dataset_is_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(Lab4Error, match=r"--DR .*no train/, val/ or test/"):
        resolve_root(tmp_path)


# ---- decoding --------------------------------------------------------------------------------
@pytest.mark.parametrize("mode,color", [("L", 128), ("RGBA", (10, 20, 30, 255)), ("P", 3)])
def test_grayscale_rgba_and_palette_pngs_are_converted(tmp_path, mode, color):
    path = save_png(tmp_path / "frame0.png", color, mode=mode, size=(256, 128))
    frame = load_frame(path)
    assert frame.shape == (3, 32, 64) and frame.dtype == np.uint8
    expected = np.asarray(Image.new(mode, (1, 1), color).convert("RGB"))[0, 0]
    np.testing.assert_array_equal(frame[:, 5, 5], expected)


def test_resize_is_bilinear_to_32x64(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (128, 256, 3), dtype=np.uint8)
    path = save_png(tmp_path / "frame0.png", img)
    expected = np.asarray(Image.fromarray(img).resize((64, 32), Image.BILINEAR)).transpose(2, 0, 1)
    np.testing.assert_array_equal(load_frame(path), expected)


# ---- the cache -------------------------------------------------------------------------------
def test_second_load_reads_the_cache_without_decoding(mini_data, tmp_path, monkeypatch):
    first = load_split(mini_data, "val", cache_dir=tmp_path / "cache")

    def no_decoding(*a, **k):
        raise AssertionError("a PNG was decoded although the cache is valid")

    monkeypatch.setattr(data, "load_frame", no_decoding)
    second = load_split(mini_data, "val", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)


def test_cache_is_rebuilt_when_a_source_file_changes(copy_of_mini, tmp_path):
    cache = tmp_path / "cache"
    before = load_split(copy_of_mini, "val", cache_dir=cache).images.copy()
    save_png(copy_of_mini / "val/val_img/frame000007.png", (255, 0, 0), size=(256, 128))
    after = load_split(copy_of_mini, "val", cache_dir=cache).images
    assert (after[7] == np.array([255, 0, 0], np.uint8)[:, None, None]).all()
    assert not np.array_equal(before[7], after[7])
    np.testing.assert_array_equal(np.delete(before, 7, 0), np.delete(after, 7, 0))


def test_a_cache_hit_returns_writable_arrays_like_a_fresh_decode(mini_data, tmp_path):
    fresh = load_split(mini_data, "val", cache_dir=tmp_path / "cache")
    assert fresh.images.flags.writeable
    cached = load_split(mini_data, "val", cache_dir=tmp_path / "cache")
    assert cached.images.flags.writeable and cached.labels.flags.writeable


def test_default_cache_lives_in_the_dataset_and_leaves_no_temp_files(mini_data):
    load_split(mini_data, "val")
    names = {p.name for p in (mini_data / ".lab4_cache").iterdir()}
    assert {"val_img_32x64.npy", "val_img_32x64.json", "val_label_32x64.npy"} <= names
    assert not [n for n in names if ".tmp" in n]


# ---- training batches ------------------------------------------------------------------------
def test_sequence_batches_are_consecutive_chunks(mini_data):
    train = load_split(mini_data, "train")
    batches = SequenceBatches(train, seq_len=16)
    assert batches.num_sequences() == 20 and batches.num_sequences(0.5) == 10
    x, p = batches.batch(torch.tensor([3, 0]))
    assert x.shape == p.shape == (2, 16, 3, 32, 64) and x.dtype == torch.float32
    np.testing.assert_allclose(x[0].numpy(), train.images[48:64] / 255.0, atol=1e-7)
    np.testing.assert_allclose(p[1].numpy(), train.labels[0:16] / 255.0, atol=1e-7)


def test_epoch_order_is_a_seeded_permutation(mini_data):
    batches = SequenceBatches(load_split(mini_data, "train"), seq_len=16)
    a = batches.epoch_order(0, seed=1)
    assert sorted(a.tolist()) == list(range(20))
    assert torch.equal(a, batches.epoch_order(0, seed=1))
    assert not torch.equal(a, batches.epoch_order(1, seed=1))
