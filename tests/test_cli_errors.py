"""Bad input: each is refused with one line naming the path or flag and what was expected, and
nothing already written in --save_root is lost."""
import shutil

import pytest
import torch

from lab4.data import load_split
from lab4.errors import Lab4Error
from lab4.cli import test_main as lab4_test
from lab4.cli import train_main as lab4_train

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
SMOKE = ["--preset", "smoke", "--device", "cpu", "--num_epoch", "1", "--steps_per_epoch", "1",
         "--train_vi_len", "4", "--val_vi_len", "4"]


@pytest.fixture
def save_root(tmp_path):
    """An output folder that already holds a previous run's files."""
    root = tmp_path / "runs"
    root.mkdir()
    for name, content in {"last.ckpt": b"previous checkpoint", "best.ckpt": b"previous best",
                          "metrics.csv": b"epoch,loss\n1,0.5\n", "config.json": b"{}",
                          "submission.csv": b"id,0\n", "pred_seq0.gif": b"GIF89a"}.items():
        (root / name).write_bytes(content)
    return root


def files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def refused(main, argv, capsys, *expected):
    """main(argv) returns 2 and ends stderr (after any progress bars) with one line that holds
    every `expected` string."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    prog = "lab4-test" if main is lab4_test else "lab4-train"
    assert f"{prog}: error: " in err, err
    message = err[err.index(f"{prog}: error: "):]
    assert message.endswith("\n") and message.count("\n") == 1, message
    for text in expected:
        assert str(text) in message, (text, message)
    return message


def train_argv(DR, root, *extra):
    """--overwrite, so that each test reaches the check it is about (the fixture's save_root
    already holds a run); the files must survive all the same."""
    return ["--DR", str(DR), "--save_root", str(root), *SMOKE, "--overwrite", *extra]


def test_a_fresh_run_into_a_folder_holding_a_run_is_refused(mini_data, save_root, capsys):
    before = files(save_root)
    argv = ["--DR", str(mini_data), "--save_root", str(save_root), *SMOKE]
    refused(lab4_train, argv, capsys, "--save_root", "already holds a training run", "--overwrite")
    assert files(save_root) == before


# ---- the dataset -----------------------------------------------------------------------------
def test_missing_dataset_folder(save_root, tmp_path, capsys):
    before = files(save_root)
    refused(lab4_train, train_argv(tmp_path / "nope", save_root), capsys, "--DR", tmp_path / "nope", "no such folder")
    assert files(save_root) == before


def test_missing_split_folder(copy_of_mini, save_root, capsys):
    shutil.rmtree(copy_of_mini / "val")
    before = files(save_root)
    refused(lab4_train, train_argv(copy_of_mini, save_root), capsys, copy_of_mini / "val" / "val_img", "missing folder")
    assert files(save_root) == before


def test_image_and_label_counts_differ(copy_of_mini, save_root, capsys):
    (copy_of_mini / "train/train_label/frame000005.png").unlink()
    before = files(save_root)
    refused(lab4_train, train_argv(copy_of_mini, save_root), capsys,
            copy_of_mini / "train", "320 images", "319 labels", "1 missing from train_label (frame000005.png)")
    assert files(save_root) == before


def test_label_names_differ(copy_of_mini, save_root, capsys):
    label = copy_of_mini / "train/train_label/frame000005.png"
    label.rename(label.with_name("frame999999.png"))
    before = files(save_root)
    refused(lab4_train, train_argv(copy_of_mini, save_root), capsys, "320 labels",
            "1 missing from train_label (frame000005.png)", "1 missing from train_img (frame999999.png)")
    assert files(save_root) == before


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def test_truncated_png(copy_of_mini, save_root, capsys):
    bad = copy_of_mini / "train/train_img/frame000010.png"
    _truncate(bad)
    before = files(save_root)
    refused(lab4_train, train_argv(copy_of_mini, save_root), capsys, bad, "truncated")
    assert files(save_root) == before


def test_truncated_png_with_worker_processes(copy_of_mini, tmp_path):
    bad = copy_of_mini / "train/train_label/frame000300.png"
    _truncate(bad)
    with pytest.raises(Lab4Error, match="frame000300.png: unreadable or truncated PNG"):
        load_split(copy_of_mini, "train", cache_dir=tmp_path / "cache", workers=2)


def test_not_a_png(copy_of_mini, tmp_path):
    bad = copy_of_mini / "val/val_img/frame000003.png"
    bad.write_text("this is not an image")
    with pytest.raises(Lab4Error, match="frame000003.png: unreadable"):
        load_split(copy_of_mini, "val", cache_dir=tmp_path / "cache")


def test_test_sequence_with_629_labels(copy_of_mini, smoke_run, save_root, capsys):
    (copy_of_mini / "test/test_label/3/frame000629.png").unlink()
    before = files(save_root)
    refused(lab4_test, ["--DR", str(copy_of_mini), "--save_root", str(save_root), "--device", "cpu",
                        "--ckpt_path", str(smoke_run / "last.ckpt")],
            capsys, copy_of_mini / "test/test_label/3", "629 pose frames, expected 630")
    assert files(save_root) == before


# ---- flags -----------------------------------------------------------------------------------
def test_unknown_kl_anneal_type(mini_data, save_root, capsys):
    before = files(save_root)
    refused(lab4_train, train_argv(mini_data, save_root, "--kl_anneal_type", "Linear"), capsys,
            "--kl_anneal_type 'Linear'", "Cyclical, Monotonic, None")
    assert files(save_root) == before


def test_non_positive_batch_size(mini_data, save_root, capsys):
    before = files(save_root)
    refused(lab4_train, train_argv(mini_data, save_root, "--batch_size", "0"), capsys, "--batch_size 0", "positive")
    assert files(save_root) == before


@pytest.mark.parametrize("argv,flag", [(["--save_root", "x"], "--DR"),
                                       (["--DR", "x", "--save_root", "y", "--optim", "SGD"], "--optim"),
                                       (["--DR", "x", "--save_root", "y", "--kl_annealing", "None"], "--kl_annealing"),
                                       (["--DR", "x", "--save_root", "y", "--num_epoch", "ten"], "--num_epoch")])
def test_argparse_errors_exit_2_naming_the_flag(argv, flag, capsys):
    with pytest.raises(SystemExit) as e:
        lab4_train(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("lab4-train: error: ") and err.count("\n") == 1 and flag in err


@no_cuda
def test_device_cuda_without_cuda(mini_data, save_root, capsys):
    before = files(save_root)
    refused(lab4_train, train_argv(mini_data, save_root, "--device", "cuda"), capsys,
            "--device cuda", "CUDA is not available")
    assert files(save_root) == before


@no_cuda
def test_device_cuda_without_cuda_in_lab4_test(mini_data, smoke_run, save_root, capsys):
    before = files(save_root)
    refused(lab4_test, ["--DR", str(mini_data), "--save_root", str(save_root), "--device", "cuda",
                        "--ckpt_path", str(smoke_run / "last.ckpt")], capsys, "--device cuda")
    assert files(save_root) == before


# ---- checkpoints -----------------------------------------------------------------------------
def test_lab4_test_with_a_checkpoint_of_another_size(mini_data, smoke_run, save_root, capsys):
    before = files(save_root)
    ckpt = smoke_run / "last.ckpt"
    refused(lab4_test, ["--DR", str(mini_data), "--save_root", str(save_root), "--device", "cpu",
                        "--ckpt_path", str(ckpt), "--F_dim", "32"],
            capsys, ckpt, "different model size", "--F_dim 16")
    assert files(save_root) == before


def test_resume_with_flags_of_another_size(mini_data, smoke_run, tmp_path, capsys):
    root = tmp_path / "resume"
    shutil.copytree(smoke_run, root)
    before = files(root)
    refused(lab4_train, ["--DR", str(mini_data), "--save_root", str(root), "--device", "cpu",
                         "--ckpt_path", str(root / "last.ckpt"), "--F_dim", "32"],
            capsys, "different model size", "--F_dim 16", "--F_dim 32")
    assert files(root) == before


def test_lab4_test_without_a_checkpoint(mini_data, save_root, capsys):
    refused(lab4_test, ["--DR", str(mini_data), "--save_root", str(save_root)], capsys, "--ckpt_path", "required")


@pytest.mark.parametrize("content", [None, b"",
                                     b"not a checkpoint at all", "truncated"])
def test_missing_or_unreadable_checkpoint(mini_data, smoke_run, save_root, tmp_path, capsys, content):
    ckpt = tmp_path / "model.ckpt"
    if content == "truncated":
        ckpt.write_bytes((smoke_run / "last.ckpt").read_bytes()[:5000])
    elif content is not None:
        ckpt.write_bytes(content)
    before = files(save_root)
    refused(lab4_test, ["--DR", str(mini_data), "--save_root", str(save_root), "--device", "cpu",
                        "--ckpt_path", str(ckpt)], capsys, "--ckpt_path", ckpt)
    assert files(save_root) == before


def test_resume_from_a_missing_checkpoint(mini_data, save_root, tmp_path, capsys):
    before = files(save_root)
    refused(lab4_train, train_argv(mini_data, save_root, "--ckpt_path", str(tmp_path / "gone.ckpt")),
            capsys, "gone.ckpt", "no such file")
    assert files(save_root) == before
