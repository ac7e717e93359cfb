"""Fitting wide tables onto a page: estimated column widths, and a split of the columns into parts that each fit,
every part repeating the key columns (what identifies a row). Used for the LaTeX tables and the HTML print layout.

Widths are estimated from the glyph widths of Computer Modern Roman (TeX's default font) at 10 pt, scaled to the font
size; the estimate is deliberately a little generous, and a test compiles the LaTeX to check that nothing overflows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pandas as pd

# Advance widths of Computer Modern Roman 10 pt glyphs, in pt (digits are 5 pt in every TeX text font).
_NARROW: Final = dict.fromkeys("iljftr.,:;'!|()[]", 3.3)
_WIDE: Final = {**dict.fromkeys("mwMW%±−=+<>&", 8.5), **dict.fromkeys("ABCDEFGHJKLNOPQRSTUVXYZ", 7.4)}
_DEFAULT: Final = 5.0
SPACE: Final = 3.4
COLUMN_SEP_PT: Final = 8.0  # two \tabcolsep of 4 pt
WRAP_MIN_PT: Final = 60.0  # a wrapped text column is never narrower than this


def text_width(text: str, size_pt: float) -> float:
    """Estimated width of `text` set in one line at `size_pt`, in pt."""
    return sum(SPACE if c == " " else _NARROW.get(c, _WIDE.get(c, _DEFAULT)) for c in text) * size_pt / 10.0 * 1.04


def longest_word(text: str, size_pt: float) -> float:
    return max((text_width(w, size_pt) for w in str(text).split()), default=0.0)


@dataclass(frozen=True)
class Column:
    name: str
    width: float  # pt the column is set at
    wrap: bool  # a wrapped text column (paragraph cell) rather than one line


BOLD: Final = 1.15  # bold Computer Modern is about 15% wider


def columns(cells: pd.DataFrame, numeric: set[str], size_pt: float, wrap_at: float,
            bold: set[tuple[int, str]] | None = None) -> list[Column]:
    """Each column's width: numbers on one line; text on one line up to `wrap_at` pt, wrapped to `wrap_at` beyond.
    `bold`: (row, column) cells set in bold."""
    out = []
    for name in cells.columns:
        # A bold cell is measured as if its text were 15% longer (spaces stand in for the extra width).
        values = [str(v) + " " * round(len(str(v)) * (BOLD - 1) * 1.5) if (i, name) in (bold or set()) else str(v)
                  for i, v in enumerate(cells[name])]
        header = longest_word(name, size_pt)  # headers wrap at spaces
        if name in numeric:
            out.append(Column(name, max([header, *(text_width(v, size_pt) for v in values)]), False))
            continue
        natural = max([header, *(text_width(v, size_pt) for v in values)])
        if natural <= wrap_at:
            out.append(Column(name, natural, False))
        else:
            words = max([header, *(longest_word(v, size_pt) for v in values)])
            out.append(Column(name, max(wrap_at, min(words, 2 * wrap_at)), True))
    return out


def split(cols: list[Column], keys: list[str], available: float) -> list[list[Column]]:
    """Parts of at most `available` pt each (column separation included), in column order, each starting with the key
    columns. A column too wide for any part is narrowed (wrapped) to fit a part of its own with the keys."""
    key_cols = [c for c in cols if c.name in keys]
    rest = [c for c in cols if c.name not in keys]
    key_width = sum(c.width + COLUMN_SEP_PT for c in key_cols)
    room = available - key_width
    parts: list[list[Column]] = []
    current: list[Column] = []
    used = 0.0
    for col in rest:
        need = col.width + COLUMN_SEP_PT
        if need > room:  # even alone it does not fit: wrap it to what is left
            col = Column(col.name, max(WRAP_MIN_PT, room - COLUMN_SEP_PT), True)
            need = col.width + COLUMN_SEP_PT
        if current and used + need > room:
            parts.append(current)
            current, used = [], 0.0
        current.append(col)
        used += need
    if current or not parts:
        parts.append(current)
    return [[*key_cols, *part] for part in parts]
