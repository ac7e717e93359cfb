"""Checks a results table from `cebench run` (used by `nox -s smoke`): expected columns, and learning beyond references.

Usage: python -m cebench.smoke runs/quickstart/results.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from cebench.config import DataConfig, Variant

METRIC_COLUMNS = [f"{m}_{s}" for m in ("l1", "l2", "psnr", "ssim", "sharpness") for s in ("mean", "std")]
RUN_COLUMNS = ["spec", "run_id", "seed", "train_time_s", "images_per_s", "warmup_s", "device", "torch_version", "git_commit"]


def check(table: pd.DataFrame) -> list[str]:
    """Problems found in the table; empty when every run has its columns and beats both references."""
    data_columns = [f"data_{k}" for k, f in DataConfig.model_fields.items() if not f.exclude]  # exclude: not in a row
    expected = RUN_COLUMNS + list(Variant.model_fields) + data_columns + METRIC_COLUMNS
    problems = [f"missing column {c}" for c in expected if c not in table]
    if problems or table.empty:
        return problems or ["the table has no rows"]
    for _, row in table.iterrows():
        for ref in ("fill", "untrained"):
            if not row["psnr_mean"] > row[f"{ref}_psnr_mean"]:
                problems.append(f"{row['run_id']}: PSNR {row['psnr_mean']:.2f} does not beat {ref} "
                                f"({row[f'{ref}_psnr_mean']:.2f})")
            if not row["l1_mean"] < row[f"{ref}_l1_mean"]:
                problems.append(f"{row['run_id']}: L1 {row['l1_mean']:.2f} does not beat {ref} "
                                f"({row[f'{ref}_l1_mean']:.2f})")
    return problems


def main(argv: list[str]) -> int:
    table = pd.read_csv(Path(argv[0]))
    problems = check(table)
    for p in problems:
        print(f"smoke: {p}")
    print(f"smoke: {len(table)} runs checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
