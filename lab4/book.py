"""The workbook as one HTML site (`make book`): the executed notebooks (nbconvert's HTML, outputs
included), the docs/ pages, the README and benchmarks/RESULTS.md, every page with the same
navigation bar, links between them rewritten to the site's pages, figures copied in.

    python -m lab4.book --executed runs/workbook/executed --out reports/book

Jupyter Book would need a Sphinx stack (and mystmd a Node runtime) this project does not otherwise
install; nbconvert and its Markdown renderer (mistune) come with Jupyter already.
"""
from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import sys
from pathlib import Path

from .errors import Lab4Error
from .files import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title} - lab4 workbook</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:auto;padding:0 1em}} nav{{background:#f4f4f4;
padding:.5em;font-size:90%}} nav a{{margin-right:.8em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .5em}} img{{max-width:100%}} pre{{background:#f8f8f8;padding:.5em;
overflow-x:auto}}</style></head>
<body><nav>{nav}</nav>
{body}
</body></html>
"""
HREF = re.compile(r'(href|src)="([^"#:]+)(#[^"]*)?"')


class Site:
    """The pages of the site: source path (repo-relative) -> page file name, and their titles."""

    def __init__(self, out: Path):
        self.out, self.pages, self.titles = out, {}, {}

    def add(self, source: Path, page: str, title: str) -> None:
        self.pages[source.resolve()] = page
        self.titles[page] = title

    def nav(self) -> str:
        return " ".join(f'<a href="{p}">{html.escape(t)}</a>' for p, t in self.titles.items())

    def link(self, target: str, source_dir: Path) -> str:
        """A relative link in a page from `source_dir`, as the site serves it: a page of the site,
        a figure copied under figures/, else a path back into the checkout."""
        path = (source_dir / target).resolve()
        if path in self.pages:
            return self.pages[path]
        if path.suffix.lower() in (".png", ".gif", ".jpg", ".svg") and path.is_file():
            (self.out / "figures").mkdir(exist_ok=True)
            shutil.copy2(path, self.out / "figures" / path.name)
            return f"figures/{path.name}"
        return Path(os.path.relpath(path, self.out)).as_posix()

    def write(self, page: str, body: str, source_dir: Path) -> None:
        body = HREF.sub(lambda m: f'{m[1]}="{self.link(m[2], source_dir)}{m[3] or ""}"', body)
        write_text_atomic(self.out / page, PAGE.format(title=html.escape(self.titles[page]), nav=self.nav(), body=body))


def markdown_title(text: str, fallback: str) -> str:
    m = re.search(r"^#\s+(.+)$", text, re.MULTILINE)
    return m[1].strip() if m else fallback


def notebook_body(path: Path) -> str:
    """nbconvert's HTML of an executed notebook (its outputs included), the <body> part only."""
    from nbconvert import HTMLExporter
    page, _ = HTMLExporter(template_name="classic").from_filename(str(path))
    return page[page.index("<body"):page.rindex("</body>")].split(">", 1)[1]


def build_book(executed: Path, out: Path, root: Path = ROOT) -> Path:
    """The site in `out` (index.html first): executed notebooks, README, docs/*.md and RESULTS.md.
    Raises Lab4Error when `executed` holds no notebook."""
    import mistune
    notebooks = sorted(Path(executed).glob("*.ipynb"))
    if not notebooks:
        raise Lab4Error(f"{executed}: no executed notebooks (run `make figures` first, or pass EXECUTED=<folder>)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    site = Site(out)
    markdown = [(root / "README.md", "index.html", "README"), (root / "docs" / "index.md", "docs.html", "docs")]
    markdown += [(p, f"doc-{p.stem}.html", p.stem) for p in sorted((root / "docs").glob("*.md")) if p.stem != "index"]
    markdown.append((root / "benchmarks" / "RESULTS.md", "results.html", "RESULTS"))
    for src, page, name in markdown:
        site.add(src, page, name if name in ("README", "docs", "RESULTS") else markdown_title(src.read_text(), name))
    for nb in notebooks:
        site.add(root / "notebooks" / nb.name, f"{nb.stem}.html", nb.stem)
    render = mistune.create_markdown(plugins=["table"], escape=False)
    for src, page, _ in markdown:
        site.write(page, render(src.read_text()), src.parent)
    for nb in notebooks:
        site.write(f"{nb.stem}.html", notebook_body(nb), root / "notebooks")
    return out / "index.html"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab4.book", description=__doc__.splitlines()[0])
    ap.add_argument("--executed", default="runs/workbook/executed", help="folder of executed notebooks")
    ap.add_argument("--out", default="reports/book", help="the site's folder")
    a = ap.parse_args(argv)
    try:
        index = build_book(Path(a.executed), Path(a.out))
    except Lab4Error as e:
        print(f"make book: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
