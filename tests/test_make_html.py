"""`make html`: one HTML file per executed notebook, outputs included; a clear message without any."""
import subprocess
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def make_html(executed, html):
    return subprocess.run(["make", "-s", "-C", str(ROOT), "html", f"EXECUTED={executed}", f"HTML_DIR={html}"],
                          capture_output=True, text=True)


def test_make_html_exports_every_executed_notebook(tmp_path):
    executed, html = tmp_path / "executed", tmp_path / "html"
    executed.mkdir()
    for name in ("02_kl_annealing", "04_psnr_per_frame"):
        cell = nbformat.v4.new_code_cell("print('val PSNR')", execution_count=1,
                                         outputs=[nbformat.v4.new_output("stream", name="stdout",
                                                                         text=f"{name}: val PSNR 27.5 dB\n")])
        nbformat.write(nbformat.v4.new_notebook(cells=[cell]), executed / f"{name}.ipynb")
    res = make_html(executed, html)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in html.iterdir()) == ["02_kl_annealing.html", "04_psnr_per_frame.html"]
    assert "04_psnr_per_frame: val PSNR 27.5 dB" in (html / "04_psnr_per_frame.html").read_text()


def test_make_html_without_executed_notebooks_says_what_to_run(tmp_path):
    res = make_html(tmp_path / "none", tmp_path / "html")
    assert res.returncode != 0 and "run make figures first" in res.stdout + res.stderr
    assert not (tmp_path / "html").exists()
