"""The README's Quickstart, timed as a new user meets it: `cebench run ablations/quickstart.yaml` in a fresh process
(interpreter and torch start-up, data, training, evaluation, references, files), one round."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cebench.smoke import check

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_end_to_end(benchmark: Any, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "cebench", "run", "ablations/quickstart.yaml", "--out", str(tmp_path / "runs"),
               "--overwrite"]
    load_before = os.getloadavg()[0]  # other work on the machine inflates the time: recorded beside it

    def quickstart() -> None:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"the quickstart exited with {done.returncode}:\n{done.stderr[-3000:]}")

    start = time.perf_counter()
    benchmark.pedantic(quickstart, rounds=1, iterations=1)
    wall = time.perf_counter() - start
    table = pd.read_csv(tmp_path / "runs" / "quickstart" / "results.csv")
    assert check(table) == []  # a fast quickstart that stopped showing learning would not count
    benchmark.extra_info |= {"wall_s": round(wall, 1), "cpus": os.cpu_count(), "load_avg_1min_before": load_before,
                             "run_device": str(table["device"].iloc[0]),
                             "train_s": round(float(table["train_time_s"].sum()), 1),
                             **{f"psnr_{r['loss']}": round(float(r["psnr_mean"]), 2) for _, r in table.iterrows()}}
