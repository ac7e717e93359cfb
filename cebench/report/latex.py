"""LaTeX: booktabs table fragments that fit an article's text width (wide tables are split into parts that repeat
their key columns, never shrunk), and `report.tex`, a standalone article with every table and figure.

Packages: booktabs, graphicx and array, all in Debian's texlive-latex-recommended / texlive-latex-base.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from PIL import Image

from cebench.report import layout
from cebench.report.document import Doc
from cebench.report.figures import DPI
from cebench.report.tables import Table, numeric_columns

TEXT_WIDTH_PT: Final = 345.0  # \textwidth of a 10 pt article: what the fragments are sized for
TABLE_FONT_PT: Final = 8.0  # \footnotesize
WRAP_AT_PT: Final = 100.0
ROWS_PER_FLOAT: Final = 24  # a split table with more rows puts each part in a float of its own

_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
        "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "Δ": r"$\Delta$", "−": "$-$",
        "<": r"\textless{}", ">": r"\textgreater{}", "≤": r"$\leq$", "×": r"$\times$", "·": r"$\cdot$", "σ": r"$\sigma$"}


def escape(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def _breakable(text: str) -> str:
    """Escaped text (a path, a command) that may break after / _ - = , . : without a hyphen."""
    return re.sub(r"([/=,.:-]|\\_)", r"\1\\allowbreak{}", escape(text))


def inline(text: str) -> str:
    """The report's inline marks: `code` (breakable typewriter) and **bold**."""
    parts = re.split(r"(`[^`]+`|\*\*[^*]+\*\*)", str(text))
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(rf"\texttt{{{_breakable(part[1:-1])}}}")
        elif part.startswith("**") and part.endswith("**") and len(part) > 3:
            out.append(rf"\textbf{{{escape(part[2:-2])}}}")
        else:
            out.append(escape(part))
    return "".join(out)


def _header(name: str, width: float) -> str:
    """A header cell that wraps at spaces to the column's width (a one-column inner tabular: no package needed)."""
    lines: list[str] = []
    for word in name.split():
        if lines and layout.text_width(f"{lines[-1]} {word}", TABLE_FONT_PT) <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    if len(lines) <= 1:
        return escape(name)
    return r"\begin{tabular}[b]{@{}l@{}}" + r"\\{}".join(escape(x) for x in lines) + r"\end{tabular}"


def _tabular(t: Table, part: list[layout.Column], numeric: set[str]) -> list[str]:
    spec = "".join(rf">{{\raggedright\arraybackslash}}p{{{c.width:.0f}pt}}" if c.wrap else
                   "r" if c.name in numeric else "l" for c in part)

    def cell(i: int, col: str) -> str:
        text = escape(t.cells.iloc[i][col])
        text = "{}" + text if text.startswith("[") else text  # not an optional argument of the previous \\
        return rf"\textbf{{{text}}}" if (i, col) in t.bold else text

    lines = [rf"\begin{{tabular}}{{@{{}}{spec}@{{}}}}", r"\toprule",
             " & ".join(_header(c.name, c.width) for c in part) + r" \\", r"\midrule"]
    lines += [" & ".join(cell(i, c.name) for c in part) + r" \\" for i in range(len(t.cells))]
    return [*lines, r"\bottomrule", r"\end{tabular}"]


def parts(t: Table, available: float = TEXT_WIDTH_PT) -> list[list[layout.Column]]:
    numeric = numeric_columns(t)
    cols = layout.columns(t.cells, numeric, TABLE_FONT_PT, WRAP_AT_PT, t.bold)
    return layout.split(cols, t.key_columns, available)


def table_tex(t: Table) -> str:
    """One or more `table` floats holding `t`, each tabular no wider than an article's text width."""
    numeric = numeric_columns(t)
    split = parts(t)
    label = re.sub(r"[^A-Za-z0-9]+", "-", t.name)
    caption = f"{escape(t.title)}. {escape(t.caption)}"
    note = "" if len(split) == 1 else f" Split into {len(split)} parts, each repeating the first column(s)."
    head = [rf"% cebench report table {t.name}; needs \usepackage{{booktabs,array}}"]
    if len(split) == 1 or len(t.cells) <= ROWS_PER_FLOAT:
        body = [r"\begin{table}[htbp]", r"\centering", r"\footnotesize", r"\setlength{\tabcolsep}{4pt}",
                rf"\caption{{{caption}{note}}}", rf"\label{{tab:{label}}}"]
        for n, part in enumerate(split):
            body += ([r"\par\medskip"] if n else []) + _tabular(t, part, numeric)
        return "\n".join([*head, *body, r"\end{table}", ""])
    floats = []
    for n, part in enumerate(split):
        title = caption + note if n == 0 else f"{escape(t.title)} (part {n + 1} of {len(split)})."
        floats += [r"\begin{table}[htbp]", r"\centering", r"\footnotesize", r"\setlength{\tabcolsep}{4pt}",
                   rf"\caption{{{title}}}", *([rf"\label{{tab:{label}}}"] if n == 0 else []),
                   *_tabular(t, part, numeric), r"\end{table}"]
    return "\n".join([*head, *floats, ""])


def _figure(root: Path, path: Path, caption: str) -> list[str]:
    pdf = path.with_suffix(".pdf")
    target = pdf if pdf.is_file() else path
    with Image.open(path) as im:
        width_pt = im.size[0] / (DPI if pdf.is_file() else 100) * 72
    size = r"width=\linewidth" if width_pt > TEXT_WIDTH_PT else ""
    return [r"\begin{figure}[htbp]", r"\centering",
            rf"\includegraphics[{size}]{{{target.relative_to(root).as_posix()}}}",
            rf"\caption{{{inline(caption)}}}", r"\end{figure}"]


def document(doc: Doc, root: Path) -> str:
    """A standalone article (pdflatex) with every block of `doc`; figures by their PDF, paths relative to `root`."""
    body: list[str] = []
    for kind, value in doc.blocks:
        if kind == "h2":
            body += [rf"\section*{{{inline(value)}}}", ""]
        elif kind == "h3":
            body += [rf"\subsection*{{{inline(value)}}}", ""]
        elif kind == "p":
            body += [inline(value), ""]
        elif kind == "ul":
            body += [r"\begin{itemize}", *(rf"\item {inline(item)}" for item in value), r"\end{itemize}", ""]
        elif kind == "code":
            lines = [rf"\texttt{{{_breakable(line)}}}" for line in str(value).splitlines()]
            body += [r"\begin{flushleft}\footnotesize", "\\\\{}\n".join(lines), r"\end{flushleft}", ""]
        elif kind == "table":
            body += [table_tex(value), ""]
        elif kind == "figure":
            path, caption, html_only = value
            if not html_only:
                body += [*_figure(root, Path(path), caption), ""]
    return "\n".join([
        r"\documentclass[a4paper,10pt]{article}",
        r"\usepackage[utf8]{inputenc}",
        r"\usepackage{booktabs}",
        r"\usepackage{array}",
        r"\usepackage{graphicx}",
        r"\setcounter{secnumdepth}{0}",
        r"\sloppy",
        rf"\title{{{inline(doc.title)}}}",
        r"\date{}",
        r"\begin{document}",
        r"\maketitle",
        "",
        *body,
        r"\end{document}",
        "",
    ])
