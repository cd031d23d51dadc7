"""The workbook (notebooks/*.ipynb): committed without outputs, numbered 00..06, and every notebook
honours the LAB4_SMOKE switch right after its parameter cell. Running them is nbval's job
(`make test` runs `pytest --nbval-lax notebooks/` with LAB4_SMOKE=1)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

import lab4

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))
EXPECTED = ["00_cvae_derivation", "01_data", "02_kl_annealing", "03_teacher_forcing",
            "04_psnr_per_frame", "05_kaggle_submission", "06_training_strategies"]


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _ids(paths):
    return [p.stem for p in paths]


def test_numbering_00_to_05_present():
    stems = [p.stem for p in NOTEBOOKS]
    for name in EXPECTED:
        assert name in stems, f"notebooks/{name}.ipynb is missing"
    numbers = sorted(int(m.group(1)) for s in stems if (m := re.match(r"^(\d\d)_", s)))
    assert numbers[: len(EXPECTED)] == list(range(len(EXPECTED))), numbers
    assert len(numbers) == len(stems), f"unnumbered notebook(s): {stems}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_without_outputs(path):
    nb = _read(path)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [], f"{path.name} cell {i} has outputs: run `make strip`"
        assert cell.execution_count is None, f"{path.name} cell {i} has an execution count: run `make strip`"
        extra = set(cell.metadata) - {"tags"}
        assert not extra, f"{path.name} cell {i} carries metadata {sorted(extra)}: run `make strip`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_title_parameters_then_smoke_switch(path):
    """Cell 1 is a markdown title; a `parameters`-tagged code cell follows; the very next code
    cell reads the test switch through the one package helper (lab4.workbook.smoke_setup), whose
    smoke values for this notebook select the smoke preset and only set names the parameter cell
    defines."""
    cells = _read(path).cells
    assert cells[0].cell_type == "markdown" and cells[0].source.lstrip().startswith("# "), \
        f"{path.name}: the first cell must be a markdown title"
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: expected exactly one cell tagged 'parameters', found {len(tagged)}"
    i = tagged[0]
    assert cells[i].cell_type == "code"
    assert i + 1 < len(cells) and cells[i + 1].cell_type == "code", \
        f"{path.name}: the cell right after the parameters must be the code cell reading the smoke switch"
    src = cells[i + 1].source
    assert re.search(rf'^SMOKE = smoke_setup\(globals\(\), "{path.stem}"\)', src, re.M), \
        f"{path.name}: no `SMOKE = smoke_setup(globals(), \"{path.stem}\")`"
    assert "print(" in src, f"{path.name}: the smoke cell must print what was chosen"
    from lab4.workbook import SMOKE_PARAMS
    params = {t.id for node in ast.walk(ast.parse(cells[i].source)) if isinstance(node, ast.Assign)
              for tgt in node.targets for t in (tgt.elts if isinstance(tgt, ast.Tuple) else [tgt])}
    smoke = SMOKE_PARAMS[path.stem]
    assert set(smoke) <= params, f"{path.name}: smoke values for names not in the parameter cell: {set(smoke) - params}"
    assert smoke.get("PRESET", "smoke") == "smoke", f"{path.name}: smoke mode does not select the smoke preset"
    for name in ("SAVE_ROOT", "CKPT", "FIGURES_DIR"):   # smoke runs never write over the user's runs or figures
        if name in params:
            assert name in smoke and smoke[name].startswith("../runs/smoke/"), f"{path.name}: {name} in smoke mode"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_no_path_hacks_and_widgets_ignored(path):
    cells = _read(path).cells
    for i, c in enumerate(cells):
        if c.cell_type != "code":
            continue
        assert "sys.path" not in c.source, f"{path.name} cell {i}: no sys.path hacks (lab4 is installed)"
        if "interactive_output" in c.source:
            assert c.source.startswith("# NBVAL_IGNORE_OUTPUT"), \
                f"{path.name} cell {i}: a widget cell must start with # NBVAL_IGNORE_OUTPUT"


def test_smoke_switch_behaviour(monkeypatch):
    monkeypatch.setenv(lab4.SMOKE_ENV, "1")
    assert lab4.smoke_mode() is True
    cfg = lab4.make_config("smoke")
    assert (cfg.steps_per_epoch, cfg.val_vi_len, cfg.num_epoch) == (4, 40, 3)
    assert cfg.F_dim < 128 and cfg.D_out_dim < 192 and cfg.preset == "smoke"
    for off in ("", "0", "false", "no"):
        monkeypatch.setenv(lab4.SMOKE_ENV, off)
        assert lab4.smoke_mode() is False
    monkeypatch.delenv(lab4.SMOKE_ENV)
    assert lab4.smoke_mode() is False


@pytest.mark.slow
def test_make_lab_serves_the_widget_extension(tmp_path):
    """`make lab` = `jupyter lab notebooks/` from the venv: the server starts, and the page it serves
    loads the ipywidgets front-end extension (without it sliders show as plain text)."""
    import json
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           "--IdentityProvider.token=", f"--ServerApp.root_dir={NB_DIR}", "--ServerApp.open_browser=False"]
    if os.geteuid() == 0:                       # containers and CI run as root (`make lab` adds it too)
        cmd.append("--allow-root")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg")}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        page = None
        for _ in range(120):
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/lab", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert page is not None, "jupyter lab did not start within 60 s"
        config = json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                                      page, re.S).group(1))
        names = [e["name"] for e in config.get("federated_extensions", [])]
        assert "@jupyter-widgets/jupyterlab-manager" in names, names
        listing = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents", timeout=5).read())
        assert {c["name"] for c in listing["content"]} >= {f"{n}.ipynb" for n in EXPECTED}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_the_set_up_cell_leaves_the_plumbing_to_the_package(path):
    """One helper (lab4.workbook.smoke_setup, which calls ensure_dataset) instead of a smoke block
    and a generate-if-missing block per notebook."""
    cells = [c for c in _read(path).cells if c.cell_type == "code"]
    setup = cells[1].source
    for plumbing in ("if SMOKE:", "generate_dataset(", "ensure_dataset(", "smoke_mode("):
        assert plumbing not in setup, f"{path.name}: {plumbing!r} in the set-up cell: smoke_setup does it"
