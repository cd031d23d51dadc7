"""`make book`: one HTML site of the executed notebooks (outputs included), the README, docs/ and
RESULTS.md, linked to each other; a clear one-line message without executed notebooks."""
import re
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def make_book(executed, out):
    return subprocess.run(["make", "-s", "-C", str(ROOT), "book", f"EXECUTED={executed}", f"BOOK_DIR={out}"],
                          capture_output=True, text=True)


@pytest.mark.slow
def test_make_book_from_a_smoke_run_notebook(tmp_path, mini_data, monkeypatch):
    """Notebook 00 executed in smoke mode, as `make figures` executes it at full size, then the site."""
    executed, book = tmp_path / "executed", tmp_path / "book"
    executed.mkdir()
    nb = nbformat.read(ROOT / "notebooks" / "00_cvae_derivation.ipynb", as_version=4)
    monkeypatch.setenv("LAB4_SMOKE", "1")                                  # the kernel inherits it
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    nbformat.write(nb, executed / "00_cvae_derivation.ipynb")
    res = make_book(executed, book)
    assert res.returncode == 0, res.stderr
    pages = {p.name for p in book.glob("*.html")}
    assert {"index.html", "docs.html", "results.html", "00_cvae_derivation.html", "doc-pipeline.html"} <= pages
    page = (book / "00_cvae_derivation.html").read_text()
    printed = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "stream"]
    assert printed and printed[0].splitlines()[0].strip() in page          # the outputs are in the site
    for name in pages:                                                     # every page links to every page
        assert all(f'href="{other}"' in (book / name).read_text() for other in pages), name
    index = (book / "index.html").read_text()
    assert 'href="docs.html' in index and 'src="figures/pred_val.gif"' in index   # README links rewritten
    assert (book / "figures" / "pred_val.gif").is_file()
    for link in re.findall(r'href="([^"#:]+\.html)', (book / "docs.html").read_text()):
        assert (book / link).is_file(), link                               # no dead link between pages


@pytest.mark.slow
def test_make_book_without_executed_notebooks_says_what_to_run(tmp_path):
    res = make_book(tmp_path / "none", tmp_path / "book")
    assert res.returncode != 0 and "run `make figures` first" in res.stdout + res.stderr
    assert not (tmp_path / "book").exists()
