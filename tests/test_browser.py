"""The widgets as a person sees them: JupyterLab from the venv, a notebook opened in headless
Chromium (Debian's `chromium`, driven by Playwright's Python API), the cells up to the slider cell
run, a slider moved with the keyboard, and the plot under it redrawn with the slider's value in its
title. The notebooks are copied to a temporary folder first (JupyterLab saves what it runs)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package: pip install -e '.[dev]'")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM}: install it with `apt-get install chromium` (Debian); "
                ".ci/run does", allow_module_level=True)

TOKEN = "lab4-browser-test"
# matplotlib's inline figures as SVG with real <text>, so the title can be read off the page
KERNEL_CONFIG = ("c.InlineBackend.figure_formats = {'svg'}\n"
                 "c.InlineBackend.rc = {'svg.fonttype': 'none'}\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a copy of the notebooks (data/ linked, runs/ private) -> base URL."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    (ROOT / "data").mkdir(exist_ok=True)
    (root / "data").symlink_to(ROOT / "data")
    ipython_dir = root / ".ipython"
    (ipython_dir / "profile_default").mkdir(parents=True)
    (ipython_dir / "profile_default" / "ipython_kernel_config.py").write_text(KERNEL_CONFIG)
    port = _free_port()
    env = {**os.environ, "LAB4_SMOKE": "1", "IPYTHONDIR": str(ipython_dir), "OMP_NUM_THREADS": "1",
           "JUPYTER_CONFIG_DIR": str(root / ".jupyter")}
    env.pop("MPLBACKEND", None)                 # the kernel's inline backend, as in a person's session
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--ServerApp.token={TOKEN}", f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
         f"--LabApp.workspaces_dir={root / '.workspaces'}", "--allow-root"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=1)
            break
        except OSError:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited: {server.stderr.read()[-2000:]}")
            time.sleep(0.5)
    else:
        pytest.fail("JupyterLab did not start within 60 s")
    yield url
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _widget_cell(name: str) -> int:
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    return next(i for i, c in enumerate(nb.cells) if "interactive_output" in c.source)


# JupyterLab shows an SVG output as <img src="data:image/svg+xml,...">: the figure's text is in it
FIGURE_SVG = """() => [...document.querySelectorAll('.jp-mod-active .jp-OutputArea-output img')]
    .map(im => im.getAttribute('src') || '').filter(src => src.startsWith('data:image/svg+xml'))
    .map(src => { const body = src.slice(src.indexOf(',') + 1);
                  return src.slice(0, src.indexOf(',')).endsWith(';base64') ? atob(body) : decodeURIComponent(body); })
    .join('\\n')"""


def _figure_svg(page) -> str:
    return page.evaluate(FIGURE_SVG)


def _wait_for_text(page, text: str, timeout: int) -> None:
    page.wait_for_function(f"() => ({FIGURE_SVG})().includes({json.dumps(text)})", timeout=timeout)


@pytest.mark.parametrize("name,slider,key,prefix,before,after", [
    ("02_kl_annealing", "cycles", "ArrowRight", "KL annealing:", "10 cycles", "11 cycles"),
    ("03_teacher_forcing", "tfr", "ArrowLeft", "tfr=", "tfr=1.0,", "tfr=0.95,"),
])
def test_moving_a_slider_redraws_the_plot_with_its_value(lab, browser, name, slider, key, prefix, before, after):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{lab}/lab/tree/notebooks/{name}.ipynb?token={TOKEN}&reset")   # reset: no tabs restored
    page.wait_for_function("(name) => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
                           " return w && w.context && w.context.path.endsWith(name) && w.sessionContext"
                           " && w.sessionContext.session && w.sessionContext.session.kernel; }",
                           arg=f"{name}.ipynb", timeout=90_000)
    page.evaluate("""async (i) => {
        const panel = window.jupyterapp.shell.currentWidget;
        await panel.sessionContext.ready;
        panel.content.activeCellIndex = i;
        await window.jupyterapp.commands.execute('notebook:run-all-above');
        panel.content.activeCellIndex = i;
        await window.jupyterapp.commands.execute('notebook:run-cell');
    }""", _widget_cell(name))
    handle = page.locator(f".jp-mod-active .widget-slider:has(.widget-label:text-is('{slider}')) .noUi-handle")
    try:
        handle.wait_for(timeout=120_000)
    except playwright.TimeoutError:
        page.screenshot(path="/tmp/browser_fail.png", full_page=True)
        raise
    _wait_for_text(page, prefix, timeout=60_000)
    svg_before = _figure_svg(page)
    assert before in svg_before and after not in svg_before
    handle.focus()
    page.keyboard.press(key)
    _wait_for_text(page, after, timeout=30_000)                 # the title shows the slider's new value
    svg_after = _figure_svg(page)
    assert svg_after != svg_before and before not in svg_after   # the plot was redrawn, not appended
    page.close()
