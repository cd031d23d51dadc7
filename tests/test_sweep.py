"""lab4-sweep: comma-separated flag values -> one ordinary run folder per combination, run in turn on
the CPU; a failing run does not stop the others; the same command again skips finished runs."""
import pandas as pd
import pytest

from lab4.cli import sweep_main as main
from lab4.sweep import combinations, run_name, split_axes


def test_axes_combinations_and_names():
    fixed, axes = split_axes(["--DR", "d", "--kl_anneal_type", "Cyclical,None", "--tfr=1.0,0", "--lr", "1e-3",
                              "--no-sigmoid_output", "--save_root", "out"])
    assert fixed == ["--DR", "d", "--lr", "1e-3", "--no-sigmoid_output", "--save_root", "out"]
    assert axes == {"kl_anneal_type": ["Cyclical", "None"], "tfr": ["1.0", "0"]}
    combos = combinations(axes)
    assert [run_name(c) for c in combos] == ["kl_anneal_type=Cyclical+tfr=1.0", "kl_anneal_type=Cyclical+tfr=0",
                                             "kl_anneal_type=None+tfr=1.0", "kl_anneal_type=None+tfr=0"]
    assert run_name({}) == "run" and combinations({}) == [{}]
    fixed, axes = split_axes(["--DR", "data,v2", "--save_root", "a,b", "--lr", "1e-3,1e-4"])   # paths: one value
    assert fixed == ["--DR", "data,v2", "--save_root", "a,b"] and axes == {"lr": ["1e-3", "1e-4"]}


def test_a_bad_value_is_refused_before_anything_runs(mini_data, tmp_path, capsys):
    assert main(["--DR", str(mini_data), "--save_root", str(tmp_path / "s"), "--lr", "1e-3,fast"]) == 2
    assert "invalid float value: 'fast'" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_three_kl_variants_and_a_failing_run(mini_data, tmp_path, capsys):
    root = tmp_path / "sweep"
    args = ["--DR", str(mini_data), "--save_root", str(root), "--preset", "smoke", "--device", "cpu",
            "--num_epoch", "1", "--steps_per_epoch", "1", "--train_vi_len", "8", "--val_vi_len", "8",
            "--kl_anneal_type", "Cyclical,Monotonic,None"]
    assert main(args) == 0
    table = pd.read_csv(root / "sweep.csv")
    assert list(table["run"]) == [f"kl_anneal_type={k}" for k in ("Cyclical", "Monotonic", "None")]
    assert (table["status"] == "done").all() and (table["epochs"] == 1).all()
    for k in ("Cyclical", "Monotonic", "None"):
        run = root / f"kl_anneal_type={k}"
        assert (run / "last.ckpt").is_file() and (run / "train.log").is_file()
        assert f'"kl_anneal_type": "{k}"' in (run / "config.json").read_text()
    assert main(args) == 0                                   # again: nothing to train
    assert set(pd.read_csv(root / "sweep.csv")["status"]) == {"done (earlier)"}
    # 320 train frames / 8 = 40 sequences: a batch of 1000 fails inside its run, the other run finishes
    capsys.readouterr()
    assert main([*args[:-2], "--batch_size", "2,1000"]) == 1
    table = pd.read_csv(root / "sweep.csv").set_index("run")
    assert table.loc["batch_size=2", "status"] == "done"
    assert table.loc["batch_size=1000", "status"].startswith("FAILED (exit 2")
    assert "--batch_size 1000: larger than" in (root / "batch_size=1000" / "train.log").read_text()
    assert "1 of 2 runs failed" in capsys.readouterr().err
