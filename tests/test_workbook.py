"""lab4.workbook: the helpers the notebooks' set-up cells call."""
import lab4.synth as synth
from lab4.workbook import ensure_dataset


def test_ensure_dataset_generates_only_when_missing(tmp_path, monkeypatch):
    calls = []

    def fake_generate(out, preset):
        calls.append((str(out), preset))
        (out / "test_solution.npy").parent.mkdir(parents=True, exist_ok=True)
        (out / "test_solution.npy").write_bytes(b"x")
    monkeypatch.setattr(synth, "generate_dataset", fake_generate)
    root = tmp_path / "data"
    assert ensure_dataset(str(root), "mini") == root and calls == [(str(root), "mini")]
    ensure_dataset(root, "mini")                         # complete now: not generated again
    assert len(calls) == 1
    assert ensure_dataset(tmp_path / "real", None) == tmp_path / "real" and len(calls) == 1   # real data: untouched
    assert not (tmp_path / "real").exists()


def test_smoke_setup_sets_the_notebooks_parameters_only_in_smoke_mode(tmp_path, monkeypatch):
    import pytest

    import lab4
    import lab4.workbook as workbook
    calls = []
    monkeypatch.setattr(workbook, "ensure_dataset", lambda dr, synth: calls.append((dr, synth)))
    params = dict(DR=str(tmp_path), SYNTH=None, PRESET="demo", CKPT="mine.ckpt", SAVE_ROOT="out")
    monkeypatch.delenv(lab4.SMOKE_ENV, raising=False)
    assert workbook.smoke_setup(params, "05_kaggle_submission") is False
    assert params["PRESET"] == "demo" and calls == [(str(tmp_path), None)]       # untouched; the dataset checked
    monkeypatch.setenv(lab4.SMOKE_ENV, "1")
    assert workbook.smoke_setup(params, "05_kaggle_submission") is True
    assert params == dict(workbook.SMOKE_PARAMS["05_kaggle_submission"]) and params["PRESET"] == "smoke"
    assert calls[-1] == ("../data/synth-mini", "mini")                          # the mini data, generated if missing
    with pytest.raises(ValueError, match="defines no"):                          # a smoke value with no parameter
        workbook.smoke_setup(dict(DR="x", SYNTH=None), "05_kaggle_submission")
    with pytest.raises(ValueError, match="unknown notebook"):
        workbook.smoke_setup({}, "07_nothing")
    assert workbook.smoke_setup({"N_DIM": 1, "H": 1, "W": 1, "MC_SAMPLES": 1}, "00_cvae_derivation") is True
    assert len(calls) == 2                                                       # no DR: no dataset
