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
