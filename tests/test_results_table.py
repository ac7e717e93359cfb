"""The results table keeps identifiers as text across appends (a commit id can look like a number)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cebench.results import append_rows, read_table


def test_a_commit_that_looks_like_a_number_survives_an_append(tmp_path: Path) -> None:
    path = tmp_path / "eval.csv"
    rows = [{"spec": "2023", "run_id": "1e3", "git_commit": "20536e606051", "psnr_mean": 20.5},
            {"spec": "2023", "run_id": "1e3", "git_commit": "20536e606051-dirty", "psnr_mean": 21.0}]
    for row in rows:  # the second append reads the first row back, then writes CSV and parquet
        append_rows(path, [row], replace_same_run=False)
    table = read_table(path)
    assert table["git_commit"].tolist() == ["20536e606051", "20536e606051-dirty"]
    assert table["spec"].tolist() == ["2023", "2023"] and table["run_id"].tolist() == ["1e3", "1e3"]
    assert pd.read_parquet(path.with_suffix(".parquet"))["git_commit"].tolist() == table["git_commit"].tolist()
    assert table["psnr_mean"].tolist() == [20.5, 21.0]
