"""Published numbers to compare against, as data (`baselines.csv` beside this module), and metric-convention conversions.

Every row carries its source, table, row label as printed, dataset, region and value range as far as the source states
them, the numbers as printed, and a note where the source is inconsistent. Numbers are stored in cebench's units:
L1/L2 in % of the value range, PSNR in dB, SSIM as a fraction (the reproduction paper prints SSIM in %; the
xyfJASON/Context-Encoder-pytorch README prints L1 as a fraction; `printed` keeps the original text).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pandas as pd
from rich.console import Console
from rich.table import Table

BASELINES_CSV: Final = Path(__file__).with_name("baselines.csv")
METRIC_COLUMNS: Final = ("l1", "l2", "psnr", "ssim")


@dataclass(frozen=True)
class Convention:
    """A way of computing the metrics. `scale` maps cebench's [0,1] values to this convention, where exact."""

    name: str
    description: str
    scale: dict[str, float]
    source: str


CONVENTIONS: Final[dict[str, Convention]] = {
    "[0,1]": Convention("cebench", "values in [0,1]; L1/L2 x100 (%); PSNR/SSIM data range 1; hole region",
                        {"l1": 1.0, "l2": 1.0, "psnr": 1.0, "ssim": 1.0}, "cebench (docs/metrics.md)"),
    "[-1,1]": Convention("[-1,1] port", "L1/L2 on [-1,1] (code that scores the tanh output directly): "
                         "L1 x2, L2 x4; PSNR and SSIM with data range 2 are unchanged",
                         {"l1": 2.0, "l2": 4.0, "psnr": 1.0, "ssim": 1.0}, "docs/baselines.md"),
}


def load_baselines(path: Path = BASELINES_CSV) -> pd.DataFrame:
    """The baseline rows, one per published (or cebench-measured) result, in file order."""
    return pd.read_csv(path, dtype={"n_test": "Int64", "image_size": "Int64"})


def convert(value: float, metric: str, value_range: str) -> float:
    """A cebench value ([0,1] convention) expressed on another value range; exact (only the scale changes)."""
    if value_range not in CONVENTIONS:
        raise ValueError(f"no exact conversion to value range {value_range!r}; known: {', '.join(CONVENTIONS)}")
    return value * CONVENTIONS[value_range].scale.get(metric, 1.0)


def _fmt(value: float, metric: str) -> str:
    if pd.isna(value):
        return "-"
    return f"{value:.4f}" if metric == "ssim" else f"{value:.2f}"


def print_baselines(console: Console | None = None) -> None:
    """`cebench baselines`: the published numbers with source, dataset and metric convention, then the notes."""
    console = console or Console()
    table = load_baselines()
    out = Table(title="Published baselines (L1/L2 in %, PSNR in dB, SSIM as a fraction)", show_lines=True)
    for col in ("source", "row as printed", "dataset", "L1 %", "L2 %", "PSNR", "SSIM", "range"):
        numeric = col in ("L1 %", "L2 %", "PSNR", "SSIM")
        out.add_column(col, justify="right" if numeric else "left", no_wrap=numeric)
    for _, row in table.iterrows():
        out.add_row(f"{row['source']}, {row['table']}", str(row["row_label"]), str(row["dataset"]),
                    *(_fmt(row[m], m) for m in METRIC_COLUMNS), str(row["value_range"]))
    console.print(out)
    console.print("[bold]Conventions and notes[/]")
    for _, row in table.iterrows():
        note = f" [yellow]Note:[/] {row['note']}" if isinstance(row["note"], str) and row["note"] else ""
        console.print(f"- [bold]{row['row_label']}[/] ({row['source']}, {row['table']}; region: {row['region']}): "
                      f"{row['convention']}.{note}", highlight=False, soft_wrap=True)
    console.print(f"[dim]data: {BASELINES_CSV}[/]")
