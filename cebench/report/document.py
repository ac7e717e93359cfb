"""A tiny document model written twice: Markdown (for a code host) and one self-contained HTML page (images inline)."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cebench.report import layout
from cebench.report.tables import Table, numeric_columns, to_html, to_markdown

CSS = """
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #1d1d1f;
       max-width: 1180px; margin: 2em auto; padding: 0 1.2em; }
h1 { font-size: 1.7em; border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #eee; padding-bottom: .2em; }
h3 { font-size: 1.1em; margin-top: 1.5em; }
code { background: #f3f3f5; padding: .1em .3em; border-radius: 3px; font-size: .92em; }
pre { background: #f3f3f5; padding: .8em 1em; border-radius: 5px; overflow-x: auto; }
pre code { background: none; padding: 0; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption, .caption { color: #555; font-size: .9em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: .88em; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: .3em .55em; vertical-align: top; }
th { background: #f0f2f5; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafafa; }
td strong { color: #0b5394; }
.print-only { display: none; }
@media print {
  @page { size: A4; margin: 12mm; }
  body { font-size: 9pt; max-width: none; margin: 0; padding: 0; }
  .screen-only { display: none; }
  .print-only { display: block; }
  .scroll { overflow: visible; }
  table { font-size: 7.5pt; page-break-inside: auto; }
  tr, figure img { break-inside: avoid; }
  th, td { padding: .15em .35em; }
  h2, h3 { break-after: avoid; }
  pre { white-space: pre-wrap; }
}
"""
PRINT_WIDTH_PT = 500.0  # A4 less 12 mm margins (527 pt), less a little for cell borders
PRINT_FONT_PT = 8.3  # 7.5 pt of a sans-serif font, which runs about 10% wider than the estimate's Computer Modern


@dataclass
class Doc:
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def h2(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def h3(self, text: str) -> None:
        self.blocks.append(("h3", text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def ul(self, items: list[str]) -> None:
        self.blocks.append(("ul", items))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def table(self, t: Table) -> None:
        self.blocks.append(("table", t))

    def figure(self, path: Path, caption: str, html_only: bool = False) -> None:
        """A PNG figure (a PDF of the same name beside it is what LaTeX includes); `html_only`: not in report.tex."""
        self.blocks.append(("figure", (path, caption, html_only)))


def markdown(doc: Doc, root: Path) -> str:
    """Markdown; figures linked relative to `root` (the report folder)."""
    out = [f"# {doc.title}", ""]
    for kind, value in doc.blocks:
        if kind in ("h2", "h3"):
            out += [("## " if kind == "h2" else "### ") + str(value), ""]
        elif kind == "p":
            out += [str(value), ""]
        elif kind == "ul":
            out += [f"- {item}" for item in value] + [""]
        elif kind == "code":
            out += ["```bash", str(value), "```", ""]
        elif kind == "table":
            out += [to_markdown(value), ""]
        elif kind == "figure":
            path, caption, _ = value
            out += [f"![{caption}]({path.relative_to(root).as_posix()})", "", f"*{caption}*", ""]
    return "\n".join(out)


def inline(text: str) -> str:
    """Escape, then the two inline marks the report uses: `code` and **bold**."""
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


def _html_table(t: Table) -> str:
    """The table as is on screen; for print, split into parts that each fit the page width (nothing is cut off)."""
    numeric = numeric_columns(t)
    split = layout.split(layout.columns(t.cells, numeric, PRINT_FONT_PT, 110.0, t.bold), t.key_columns, PRINT_WIDTH_PT)
    if len(split) == 1:
        return to_html(t)
    printed = []
    for n, part in enumerate(split):
        names = [c.name for c in part]
        bold = {(i, c) for i, c in t.bold if c in names}
        title = t.title if n == 0 else f"{t.title} (part {n + 1} of {len(split)})"
        printed.append(to_html(Table(f"{t.name}-part{n + 1}", title, t.caption if n == len(split) - 1 else "",
                                     t.cells[names], t.data, bold, t.keys)))
    return f'<div class="screen-only">{to_html(t)}</div>\n<div class="print-only">' + "\n".join(printed) + "</div>"


def html_page(doc: Doc) -> str:
    """One self-contained HTML page: CSS inline, every figure a base64 data: URI, no external reference."""
    body = [f"<h1>{inline(doc.title)}</h1>"]
    for kind, value in doc.blocks:
        if kind in ("h2", "h3"):
            body.append(f"<{kind}>{inline(str(value))}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{inline(str(value))}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in value) + "</ul>")
        elif kind == "code":
            body.append(f"<pre><code>{html.escape(str(value))}</code></pre>")
        elif kind == "table":
            body.append(_html_table(value))
        elif kind == "figure":
            path, caption, _ = value
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{inline(caption)}</figcaption></figure>")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(doc.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
