"""Checks a results table from `cebench run` (used by `nox -s smoke`): expected columns, and learning beyond references.

Usage: python -m cebench.smoke runs/quickstart/results.csv
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

import pandas as pd

from cebench.config import DataConfig, Variant

METRIC_COLUMNS = [f"{m}_{s}" for m in ("l1", "l2", "psnr", "ssim", "sharpness") for s in ("mean", "std")]
RUN_COLUMNS = ["spec", "run_id", "seed", "train_time_s", "images_per_s", "warmup_s", "device", "world_size", "devices",
               "torch_version", "git_commit"]
# Learning, by a wide margin: the quickstart's runs lead the mean-colour fill by 6.3-6.6 dB of hole PSNR and the
# untrained model by 7.5-7.8 dB, and its joint run's hole is 0.15 sharper than its L2 run's (2-core CPU, seed 0).
PSNR_MARGIN_DB: Final = 3.0
SHARPNESS_MARGIN: Final = 0.05  # joint over L2, same variant otherwise: the adversarial term's sharper fill


def check(table: pd.DataFrame) -> list[str]:
    """Problems found in the table; empty when every run has its columns, beats both references by `PSNR_MARGIN_DB`
    (and in L1), and every joint run is `SHARPNESS_MARGIN` sharper than the L2 run that differs from it only in loss."""
    data_columns = [f"data_{k}" for k, f in DataConfig.model_fields.items() if not f.exclude]  # exclude: not in a row
    expected = RUN_COLUMNS + list(Variant.model_fields) + data_columns + METRIC_COLUMNS
    problems = [f"missing column {c}" for c in expected if c not in table]
    if problems or table.empty:
        return problems or ["the table has no rows"]
    for _, row in table.iterrows():
        for ref in ("fill", "untrained"):
            if not row["psnr_mean"] >= row[f"{ref}_psnr_mean"] + PSNR_MARGIN_DB:
                problems.append(f"{row['run_id']}: PSNR {row['psnr_mean']:.2f} does not beat {ref} "
                                f"({row[f'{ref}_psnr_mean']:.2f}) by {PSNR_MARGIN_DB:g} dB")
            if not row["l1_mean"] < row[f"{ref}_l1_mean"]:
                problems.append(f"{row['run_id']}: L1 {row['l1_mean']:.2f} does not beat {ref} "
                                f"({row[f'{ref}_l1_mean']:.2f})")
    same = [c for c in [*Variant.model_fields, *data_columns, "seed"] if c != "loss"]
    for _, runs in table.groupby(same, dropna=False):
        by_loss = runs.set_index("loss")
        if {"l2", "joint"} <= set(by_loss.index) and by_loss.index.is_unique:
            l2, joint = by_loss.loc["l2"], by_loss.loc["joint"]
            if not joint["sharpness_mean"] >= l2["sharpness_mean"] + SHARPNESS_MARGIN:
                problems.append(f"{joint['run_id']}: sharpness {joint['sharpness_mean']:.3f} is not "
                                f"{SHARPNESS_MARGIN:g} above L2's ({l2['run_id']}: {l2['sharpness_mean']:.3f})")
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
