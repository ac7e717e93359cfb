"""How a command prints a table: a rich table in a terminal, Markdown when piped, or CSV, Markdown or JSON on request.

Cells are never cut with "…": in a terminal long cells wrap (at 80 columns too), and the plain formats hold every
character, so what is pasted into an issue or a paper is what was computed. CSV and JSON keep numbers as numbers.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from rich import box
from rich.console import Console
from rich.table import Table

from cebench.errors import UserError

FORMATS: Final = ("table", "csv", "markdown", "json")
FORMAT_HELP: Final = "table (a terminal), markdown (default when piped), csv or json"


@dataclass
class Listing:
    """One table: its columns, its rows (raw values), and how a value is shown in the table and Markdown formats."""

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    numeric: set[str] = field(default_factory=set)  # right-aligned
    prose: set[str] = field(default_factory=set)  # may wrap in a narrow terminal; the others (names, numbers) never do
    detail: set[str] = field(default_factory=set)  # in CSV and JSON only (the table and Markdown say it in notes)
    display: set[str] = field(default_factory=set)  # in the table and Markdown only (a text made of detail columns)
    show: Callable[[str, Any], str] = lambda column, value: _show(value)
    caption: str | None = None


def _show(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def pick_format(fmt: str | None, console: Console) -> str:
    """The format asked for, else a rich table in a terminal and Markdown otherwise (a pipe, a file, a test)."""
    if fmt is None:
        return "table" if console.is_terminal else "markdown"
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: valid: {', '.join(FORMATS)}")
    return fmt


def emit(listings: Sequence[Listing], fmt: str | None, console: Console, notes: Sequence[str] = ()) -> None:
    """Print `listings` (and, in the table and Markdown formats, `notes`) in the chosen format."""
    fmt = pick_format(fmt, console)
    if fmt == "json":
        tables = {t.title: [_record(t, row) for row in t.rows] for t in map(_data, listings)}
        _plain(console, json.dumps(tables if len(listings) > 1 else tables[listings[0].title], indent=2, default=str))
    elif fmt == "csv":
        if len(listings) > 1:
            raise UserError(f"--format csv writes one table; this command has {len(listings)} "
                            f"({', '.join(t.title for t in listings)}): use markdown or json, or ask for one")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        data = _data(listings[0])
        writer.writerow(data.columns)
        writer.writerows([_raw(v) for v in row] for row in data.rows)
        _plain(console, buffer.getvalue().rstrip("\n"))
    elif fmt == "markdown":
        _plain(console, "\n\n".join(markdown(_brief(t)) for t in listings) + "".join(f"\n\n{n}" for n in notes))
    else:
        for t in map(_brief, listings):
            console.print(rich_table(t) if _fits(t, console.width) else records(t), soft_wrap=False)
        for note in notes:
            console.print(note, markup=False, highlight=False, soft_wrap=False)  # wrapped between words at the width


PROSE_MIN: Final = 24  # narrower than this, a prose column reads one word a line


def _fits(listing: Listing, width: int) -> bool:
    """Whether the table fits `width` with names and numbers whole and prose columns at least PROSE_MIN wide."""
    def longest(i: int) -> int:
        return max([len(listing.columns[i])] + [len(listing.show(listing.columns[i], r[i])) for r in listing.rows])

    need = sum(min(PROSE_MIN, longest(i)) if c in listing.prose else longest(i) for i, c in enumerate(listing.columns))
    return need + 3 * len(listing.columns) + 1 <= width  # a space either side of a cell, one between columns


def rich_table(listing: Listing) -> Table:
    """Names and numbers on one line, prose wrapped at word boundaries, no vertical rules."""
    table = Table(title=listing.title, caption=listing.caption, box=box.SIMPLE_HEAD)
    for col in listing.columns:
        table.add_column(col, justify="right" if col in listing.numeric else "left", no_wrap=col not in listing.prose,
                         overflow="fold")
    for row in listing.rows:
        table.add_row(*(listing.show(c, v) for c, v in zip(listing.columns, row, strict=True)))
    return table


def records(listing: Listing) -> Table:
    """A table too wide for the terminal, one record after another (the first column as its heading), like psql's
    expanded display: every cell whole, however narrow the terminal."""
    grid = Table(title=listing.title, caption=listing.caption, box=None, show_header=False, padding=(0, 1), expand=True,
                 title_justify="left", caption_justify="left")  # the terminal's width for the title and caption
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold", ratio=1)  # the values take the width the names leave
    for n, row in enumerate(listing.rows):
        if n:
            grid.add_row("", "")
        cells = [listing.show(c, v) for c, v in zip(listing.columns, row, strict=True)]
        grid.add_row(listing.columns[0], cells[0], style="bold")
        for col, cell in zip(listing.columns[1:], cells[1:], strict=True):
            grid.add_row(f"  {col}", cell)
    return grid


def markdown(listing: Listing) -> str:
    def cell(text: str) -> str:
        return text.replace("|", r"\|").replace("\n", " ")

    align = ["---:" if c in listing.numeric else ":---" for c in listing.columns]
    lines = [f"**{listing.title}**", "", "| " + " | ".join(map(cell, listing.columns)) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cell(listing.show(c, v)) for c, v in zip(listing.columns, row, strict=True)) + " |"
              for row in listing.rows]
    if listing.caption:
        lines += ["", f"*{listing.caption}*"]
    return "\n".join(lines)


def _brief(listing: Listing) -> Listing:
    """`listing` as a table shows it: without its detail columns."""
    return _without(listing, listing.detail)


def _data(listing: Listing) -> Listing:
    """`listing` as data: without the columns that only display."""
    return _without(listing, listing.display)


def _without(listing: Listing, drop: set[str]) -> Listing:
    keep = [i for i, c in enumerate(listing.columns) if c not in drop]
    return Listing(listing.title, [listing.columns[i] for i in keep], [[row[i] for i in keep] for row in listing.rows],
                   listing.numeric, listing.prose, show=listing.show, caption=listing.caption)


def _raw(value: Any) -> Any:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _record(listing: Listing, row: list[Any]) -> dict[str, Any]:
    return {c: (None if v == "" else v) for c, v in zip(listing.columns, map(_raw, row), strict=True)}


def _plain(console: Console, text: str) -> None:
    """Exactly `text`: no markup, no highlighting, no wrapping at the console's width."""
    console.print(text, markup=False, highlight=False, soft_wrap=True, emoji=False)
