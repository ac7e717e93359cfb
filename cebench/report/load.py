"""Reading `cebench run` outputs for a report: results tables, per-image scores, training histories, tuning studies.

Input problems (a folder without results, mixed metric conventions, a run folder that is gone) become one-line
`UserError`s, so `cebench report` exits with code 2 before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cebench.config import Variant
from cebench.errors import UserError
from cebench.results import RESULTS_CSV, read_table

CONVENTION_COLUMNS = ("value_range", "region", "convention")
REQUIRED_COLUMNS = ("spec", "run_id", "seed", "psnr_mean", "l1_mean", *CONVENTION_COLUMNS)
TRIAL_ID = re.compile(r"^trial\d+$")
SEED_SUFFIX = re.compile(r"-seed-?\d+$")


@dataclass
class Study:
    """Everything a report reads. `runs`: one row per non-tuning run, with `input`, `run_dir` and `variant` (the label
    of its grid point, the same for every seed) added; `trials`: tuning rows (run_id `trial<N>`)."""

    inputs: list[Path]
    runs: pd.DataFrame
    trials: pd.DataFrame
    diverged: pd.DataFrame = field(default_factory=pd.DataFrame)  # rows with a status other than ok: no metrics
    tune_plots: list[Path] = field(default_factory=list)
    tune_tables: list[Path] = field(default_factory=list)
    _per_image: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    @property
    def specs(self) -> list[str]:
        return list(dict.fromkeys(self.runs["spec"].tolist() + self.trials["spec"].tolist()))

    def axes(self, spec: str) -> list[str]:
        """The spec's axis names, in spec order (columns `axis_<name>` with values for this spec)."""
        rows = self.runs[self.runs["spec"] == spec]
        return [c.removeprefix("axis_") for c in rows.columns if c.startswith("axis_") and rows[c].notna().any()]

    def per_image(self, run_dir: str) -> pd.DataFrame:
        """A run's per-image scores indexed by test_index (cached)."""
        if run_dir not in self._per_image:
            self._per_image[run_dir] = pd.read_csv(Path(run_dir) / "per_image.csv").set_index("test_index")
        return self._per_image[run_dir]


def fmt_value(value: Any) -> str:
    """Axis values as a spec writes them: 4000 not 4000.0 (CSV round trips turn int columns with gaps into float)."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _read_one(path: Path) -> tuple[Path, pd.DataFrame]:
    folder = path.parent if path.name == RESULTS_CSV else path
    if not folder.exists():
        raise UserError(f"{folder}: no such directory")
    csv = folder / RESULTS_CSV
    if not csv.is_file():
        raise UserError(f"{folder}: no {RESULTS_CSV} (run `cebench run SPEC` first)")
    try:
        table = read_table(csv)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as e:
        raise UserError(f"{csv}: not a readable results table ({str(e).splitlines()[0]})") from None
    table = table.copy()  # one block per dtype: read_csv leaves one per column, and adding columns then warns
    missing = [c for c in REQUIRED_COLUMNS if c not in table]
    if missing:
        raise UserError(f"{csv}: missing column {missing[0]!r} (not a cebench results table?)")
    if table.empty:
        raise UserError(f"{csv}: no rows (run `cebench run SPEC` first)")
    # Tables written before a variant field existed ran with its default.
    for name, info in Variant.model_fields.items():
        if name not in table:
            table[name] = info.default
    return folder, table


def _check_conventions(table: pd.DataFrame) -> None:
    for col in CONVENTION_COLUMNS:
        values = table[col].astype(str).unique()
        if len(values) > 1:
            a = table[table[col].astype(str) == values[0]].iloc[0]
            b = table[table[col].astype(str) == values[1]].iloc[0]
            raise UserError(f"incompatible metric conventions: {a['input']} has {col} {values[0]!r} but {b['input']} "
                            f"has {values[1]!r}; report them separately")


def _variant_label(row: pd.Series, axes: list[str]) -> str:
    values = [(a, row[f"axis_{a}"]) for a in axes if pd.notna(row.get(f"axis_{a}"))]
    if values:
        return ", ".join(f"{a}={fmt_value(v)}" for a, v in values)
    return SEED_SUFFIX.sub("", str(row["run_id"]))


def load(inputs: list[Path]) -> Study:
    """Read and check every input folder (`runs/<spec>/` or its results.csv)."""
    if not inputs:
        raise UserError("no input folders given (e.g. `cebench report runs/quickstart/`)")
    frames = []
    for path in inputs:
        folder, table = _read_one(Path(path))
        frames.append(table.assign(input=str(folder)))
    table = pd.concat(frames, ignore_index=True)
    _check_conventions(table)
    dup = table[table.duplicated(subset=["spec", "run_id"], keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        raise UserError(f"run {first['spec']}/{first['run_id']} appears twice ({', '.join(dup['input'].unique())}); "
                        "give each spec once")
    status = table["status"].fillna("ok") if "status" in table else pd.Series("ok", index=table.index)
    diverged, table = table[status != "ok"].reset_index(drop=True), table[status == "ok"].reset_index(drop=True)
    is_trial = table["run_id"].astype(str).str.match(TRIAL_ID)
    runs = table[~is_trial].reset_index(drop=True).copy()
    runs["run_dir"] = [str(Path(i) / str(r)) for i, r in zip(runs["input"], runs["run_id"], strict=True)]
    for _, row in runs.iterrows():
        run_dir = Path(row["run_dir"])
        if not run_dir.is_dir():
            raise UserError(f"{run_dir}: run folder missing (listed in {Path(row['input']) / RESULTS_CSV}); "
                            "rerun with `cebench run SPEC --resume`")
        if not (run_dir / "per_image.csv").is_file():
            raise UserError(f"{run_dir}: no per_image.csv (needed for paired statistics); "
                            "rerun with `cebench run SPEC --resume`")
    study = Study(inputs=[Path(p) for p in inputs], runs=runs, trials=table[is_trial].reset_index(drop=True),
                  diverged=diverged)
    runs["variant"] = [_variant_label(row, study.axes(row["spec"])) for _, row in runs.iterrows()]
    for folder in dict.fromkeys(table["input"]):
        root = Path(folder)
        study.tune_plots += sorted(p for p in root.rglob("plots/*.png") if len(p.relative_to(root).parts) <= 4)
        study.tune_tables += sorted(p for name in ("trials.csv", "pareto.csv") for p in root.rglob(name)
                                    if len(p.relative_to(root).parts) <= 3)
    return study
