"""A spec's output folder, `runs/<spec>/`: who may write it, what may be deleted, and how its results table is kept.

Everything here protects a user's files and results:
- `FolderLock`: one process at a time per folder; a second gets one line naming the holder (PID and host). The lock is
  the kernel's (`flock`), so it dies with its holder and the next process simply takes it over.
- `spec_changes`: what changed in a spec since its runs were trained, so `--resume` never mixes settings.
- `remove_runs`: `--overwrite` deletes the spec's own run folders and tables, nothing else.
- `write_results`: the table is rebuilt from every finished run's `result.json`, so a row can never be lost between
  the two writes (a kill after `result.json` is healed on the next start).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import pandas as pd

from cebench.checkpoint import RESULT
from cebench.errors import UserError
from cebench.imageio import remove_temp_files
from cebench.results import RESULTS_CSV, RESULTS_PARQUET, write_table

SPEC_JSON = "spec.json"
LOCK = ".lock"
# Changing these does not change what a finished run means; seeds and axis values may grow (new runs are added).
_FREE_FIELDS = ("description",)
_GROWING_FIELDS = ("seeds", "axes.")


def spec_folder(out_root: Path, name: str) -> Path:
    """`out_root/name`, created; one line when a file stands where a folder must be."""
    folder = out_root / name
    for path in (out_root, folder):
        if path.exists() and not path.is_dir():
            raise UserError(f"{path}: is a file, not a folder; pass another --out or move the file")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class FolderLock:
    """Use of a folder by this process, held until `release` (or the process's death). Exclusive by default; with
    `shared`, the grid workers of `cebench run --devices/--storage` hold it together (they coordinate through their
    study), while a plain `cebench run` of the same spec still excludes them all, and they it."""

    def __init__(self, folder: Path, what: str = "cebench run", *, shared: bool = False) -> None:
        self.path, self.what, self.shared = folder / LOCK, what, shared
        self._file: Any = None

    def __enter__(self) -> FolderLock:
        handle = open(self.path, "a+")  # held until release; "a+" leaves the holder's note intact
        if _try_lock(handle, fcntl.LOCK_EX):  # nobody holds it: ours, with our note
            handle.seek(0)
            handle.truncate()
            since = dt.datetime.now().astimezone().isoformat(timespec="seconds")
            handle.write(f"{self.what} (pid {os.getpid()} on {socket.gethostname()}, since {since})\n")
            handle.flush()
            # A grid worker lets the others in; the note keeps naming the first of them.
            if not self.shared or _try_lock(handle, fcntl.LOCK_SH):
                self._file = handle
                return self
        elif self.shared and _try_lock(handle, fcntl.LOCK_SH):  # other grid workers hold it
            self._file = handle
            return self
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UserError(f"{self.path.parent} is in use by {holder}; wait for it to finish, or stop it and rerun "
                        "with --resume")

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()  # closing releases the lock; the file stays, so the lock is never on two inodes
            self._file = None


def _try_lock(handle: Any, kind: int) -> bool:
    try:
        fcntl.flock(handle, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def spec_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'field: old -> new' for every setting that differs between two dumped specs, except the free ones; seeds and
    axis values may only grow."""
    before, after = _flat(old), _flat(new)
    changes = []
    for key in sorted(before.keys() | after.keys()):
        a, b = before.get(key), after.get(key)
        if a == b or key in _FREE_FIELDS:
            continue
        if key.startswith(_GROWING_FIELDS) and isinstance(a, list) and isinstance(b, list) and \
                {json.dumps(v) for v in a} <= {json.dumps(v) for v in b}:
            continue
        changes.append(f"{key}: {_shown(a)} -> {_shown(b)}")
    return changes


def _flat(payload: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in payload.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _shown(value: Any) -> str:
    return "(none)" if value is None else json.dumps(value)


def check_unchanged(folder: Path, spec_json: str) -> None:
    """Refuse to resume runs trained under other settings: one line listing the fields that changed."""
    saved = folder / SPEC_JSON
    if not saved.is_file():
        return
    try:
        old = json.loads(saved.read_text())
    except ValueError:
        raise UserError(f"{saved}: not valid JSON; restore it, or rerun with --overwrite") from None
    changes = spec_changes(old, json.loads(spec_json))
    if changes:
        raise UserError(f"{saved}: the spec changed since its runs were trained ({'; '.join(changes)}); give it a new "
                        "name, or rerun with --overwrite to start over")


def remove_runs(folder: Path, run_ids: list[str], *, tables: bool) -> None:
    """What `--overwrite` deletes: these run folders (and with `tables` the spec's results and spec.json), never
    anything else in `folder`."""
    for run_id in run_ids:
        run_dir = folder / run_id
        if run_dir.is_symlink():
            run_dir.unlink()  # the link only, never what it points to
        elif run_dir.is_dir():
            shutil.rmtree(run_dir)
    for name in (RESULTS_CSV, RESULTS_PARQUET, SPEC_JSON) if tables else ():
        (folder / name).unlink(missing_ok=True)


def clean_leftovers(folder: Path, run_ids: list[str]) -> int:
    """Remove the temporary files of writes a killed process left half-done; returns how many."""
    return sum(len(remove_temp_files(d)) for d in (folder, *(folder / r for r in run_ids)))


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """A finished run's row (its `result.json`), or None when the run has not finished."""
    path = run_dir / RESULT
    if not path.is_file():
        return None
    try:
        row = json.loads(path.read_text())
    except ValueError:
        raise UserError(f"{path}: not valid JSON; delete it to score that run again") from None
    if not isinstance(row, dict):
        raise UserError(f"{path}: not a results row; delete it to score that run again")
    return row


def write_results(folder: Path, run_ids: list[str]) -> pd.DataFrame:
    """Rebuild `results.csv` (+ parquet) from the finished runs among `run_ids`, in that order."""
    rows = [row for row in (read_result(folder / r) for r in run_ids) if row is not None]
    table = pd.DataFrame(rows)
    if rows:
        write_table(table, folder / RESULTS_CSV)
    return table
