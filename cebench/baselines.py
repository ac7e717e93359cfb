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


def _fmt(value: float | None, metric: str) -> str:
    if value is None or pd.isna(value):
        return "-"
    return f"{value:.4f}" if metric.lower() == "ssim" else f"{value:.2f}"


def print_baselines(console: Console | None = None, fmt: str | None = None) -> None:
    """`cebench baselines`: the published numbers with source, dataset and metric convention, then the notes."""
    from cebench.output import Listing, emit

    console = console or Console()
    table = load_baselines()
    numbers = ["L1 %", "L2 %", "PSNR", "SSIM"]
    out = Listing("Published baselines (L1/L2 in %, PSNR in dB, SSIM as a fraction)",
                  ["source", "row as printed", "dataset", *numbers, "range", "region", "convention", "note"],
                  numeric=set(numbers), prose={"source", "row as printed", "dataset"},
                  detail={"region", "convention", "note"},
                  show=lambda column, value: _fmt(value, column) if column in numbers else str(value))
    for _, row in table.iterrows():
        note = row["note"] if isinstance(row["note"], str) and row["note"] else None
        out.rows.append([f"{row['source']}, {row['table']}", str(row["row_label"]), str(row["dataset"]),
                         *(None if pd.isna(row[m]) else float(row[m]) for m in METRIC_COLUMNS),
                         str(row["value_range"]), str(row["region"]), str(row["convention"]), note])
    notes = ["Conventions and notes:"] + [
        f"- {row['row_label']} ({row['source']}, {row['table']}; region: {row['region']}): {row['convention']}."
        + (f" Note: {row['note']}" if isinstance(row["note"], str) and row["note"] else "") for _, row in table.iterrows()
    ] + [f"data: {BASELINES_CSV}"]
    emit([out], fmt, console, notes)
