"""The tidy results table: one row per run, the only contract between `run`/`tune`/`eval` and `report`."""

from __future__ import annotations

import datetime as dt
import functools
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import cebench
from cebench import distributed
from cebench.config import DataConfig, Variant
from cebench.imageio import atomic_path

RESULTS_CSV = "results.csv"
RESULTS_PARQUET = "results.parquet"
CONVENTION = "values in [0,1]; L1/L2 in % (x100); PSNR in dB per image, averaged; SSIM 11x11 gaussian sigma 1.5"
# Read as text whatever they look like: a commit such as 20536e606051 would otherwise be the float 2.05e16, i.e. inf.
TEXT_COLUMNS = ("spec", "run_id", "git_commit")


def read_table(path: Path) -> pd.DataFrame:
    """A table cebench wrote (results, eval, probe), its identifiers and commit as text."""
    return pd.read_csv(path, dtype=dict.fromkeys(TEXT_COLUMNS, str))


@functools.cache
def git_commit() -> str:
    """The commit of the cebench source tree, with '-dirty' when it has uncommitted changes; 'unknown' outside git."""
    root = Path(cebench.__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def make_row(
    *, spec: str, run_id: str, variant: Variant, data: DataConfig, seed: int, summary: dict[str, float],
    n_test: int, device: torch.device, train_time_s: float = float("nan"), images_per_s: float = float("nan"),
    warmup_s: float = float("nan"), status: str = "ok", reason: str = "", extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A results-table row: identity, status (`ok`, or `diverged` with the reason and no metrics), every config field,
    each metric's mean and std, cost (training time and images/s without the warm-up, which `warmup_s` holds), and
    provenance: `world_size` processes trained the run on `devices` (1 and `device` but under torchrun)."""
    row: dict[str, Any] = {"spec": spec, "run_id": run_id, "seed": seed, "status": status, "reason": reason}
    row.update(variant.model_dump(mode="json"))
    row.update({f"data_{k}": v for k, v in data.model_dump(mode="json").items()})
    row.update(summary)
    row.update({
        "n_test": n_test, "region": "hole", "value_range": "[0,1]", "convention": CONVENTION,
        "train_time_s": train_time_s, "images_per_s": images_per_s, "warmup_s": warmup_s, "device": _device_name(device),
        "world_size": distributed.world_size(), "devices": distributed.devices(device),
        "torch_version": torch.__version__, "cebench_version": cebench.__version__, "git_commit": git_commit(),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    })
    row.update(extra or {})
    return row


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


def append_rows(path: Path, rows: list[dict[str, Any]], replace_same_run: bool = True) -> pd.DataFrame:
    """Add rows to the CSV table at `path` (+ a parquet copy); a rerun replaces its earlier row. Atomic writes."""
    table = pd.DataFrame(rows)
    if path.is_file():
        table = pd.concat([read_table(path), table], ignore_index=True)
        if replace_same_run:
            table = table.drop_duplicates(subset=["spec", "run_id"], keep="last").reset_index(drop=True)
    write_table(table, path)
    return table


def write_table(table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    try:
        with atomic_path(path.with_suffix(".parquet")) as tmp:
            table.to_parquet(tmp, index=False)
    except ImportError:  # parquet is a convenience; the CSV is the contract
        pass
