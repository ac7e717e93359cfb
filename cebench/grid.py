"""One grid shared by several workers: `cebench run SPEC --devices LIST` (a worker per device of this machine) and
`cebench run SPEC --storage URL` (the same command on several machines). Built on Optuna's storages, as `tune` is.

The grid's runs are the trials of one study, `run:<spec name>`: each run is enqueued as a WAITING trial carrying its
run id, and a worker claims the next one exactly as Optuna's own `Study.ask` pops its queue (the WAITING -> RUNNING
transition of `set_trial_state_values`, which only one worker can make). It trains the run with `cebench run`'s own
single-run code, writes the run folder and `result.json` as `cebench run` does, and then tells the trial COMPLETE (or,
diverged, FAIL with the reason), keeping the row, the per-image scores and the history in the trial's user attributes:
`cebench results --storage` assembles the one table from them on any machine.

Exactly once. A run is finished when one of its trials is COMPLETE, or FAILed with a row (diverged; `--retry-diverged`
marks those of the study as to be trained again). Enqueueing the runs that have no live (waiting or running) and no
finished trial can race between machines and queue a run twice, so a claimed trial is trained only if its run is not
finished and no other live trial of it has a lower number; otherwise it is failed as a `duplicate`. Of the live trials
of a run only the lowest-numbered one ever trains, and a run whose `result.json` is already on disk is recorded, not
trained again.

A dead worker. Its RUNNING trial is failed by `reclaim_dead_workers` (a process of this machine that no longer exists, a
journal heartbeat or Optuna's database heartbeat silent too long) and its run queued again; the next worker continues
it from its checkpoint when it shares the disk. An idle worker waits while runs are in flight elsewhere, so that a
worker dying there still has its run retried before the command returns.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import torch
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import Progress

from cebench import run as single_run
from cebench.checkpoint import RESULT
from cebench.config import Spec
from cebench.errors import UserError
from cebench.imageio import atomic_path, remove_temp_files, write_text
from cebench.spec import RunPlan, expand
from cebench.spec_folder import read_result, remove_runs, spec_changes, write_results
from cebench.storage import FileLock, Heartbeat, journal_path, open_storage, reclaim_dead_workers, shown, worker_id

STUDY_PREFIX = "run:"  # a run grid's study, beside tune studies (named after their spec) in one storage
JOURNAL = "grid.log"  # --devices without --storage: the grid's journal file, in the spec folder
POLL_S = 2.0  # an idle worker looks again this often while runs are in flight elsewhere
QUEUE_LOCK, RESULTS_LOCK = ".grid.lock", ".results.lock"
STORED_FILES = ("per_image.csv", "history.csv")  # kept with the row in the study: `report` needs them
_NOT_GRID = {"description", "probe"}  # spec fields that change neither which runs the grid holds nor what they mean


def default_storage(spec_dir: Path) -> str:
    return f"journal:{(spec_dir / JOURNAL).resolve()}"


@dataclass(frozen=True)
class Claim:
    """A run this worker claimed: its trial, and whether it is a retry of a diverged run."""

    trial_id: int
    number: int
    run_id: str
    retry_diverged: bool


class GridStore:
    """The study of one spec's grid in a storage: claiming runs, recording them, and the rows of the finished ones."""

    def __init__(self, spec: Spec, url: str, *, create: bool = True) -> None:
        self.spec, self.url = spec, url
        self.plans: dict[str, RunPlan] = {p.run_id: p for p in expand(spec)}
        self.name = STUDY_PREFIX + spec.name
        self.study = open_grid_study(self.name, url, create=create)
        self._check_same_grid()

    def _check_same_grid(self) -> None:
        """Every worker, on any machine, trains the same grid: the first one stores it with the study, and a spec that
        changed it (beyond more seeds or axis values) is refused, naming the fields."""
        grid = self.spec.model_dump(mode="json", exclude=_NOT_GRID)
        saved = self.study.user_attrs.get("grid")
        if saved is None:
            self.study.set_user_attr("grid", grid)
            return
        changes = spec_changes(saved, grid)
        if changes:
            raise UserError(f"study {self.name!r} in {shown(self.url)} holds another grid ({'; '.join(changes)}); "
                            "give the spec a new name or use another --storage")

    # -- the trials of each run ---------------------------------------------------------------------------------------

    def trials(self) -> dict[str, list[FrozenTrial]]:
        by_run: dict[str, list[FrozenTrial]] = defaultdict(list)
        for t in self.study.get_trials(deepcopy=False):
            if isinstance(run := t.user_attrs.get("run"), str):
                by_run[run].append(t)
        return by_run

    def _retry_below(self) -> int:
        return int(self.study.user_attrs.get("retry_diverged_below", 0))

    @staticmethod
    def finished(trials: list[FrozenTrial], retry_below: int) -> FrozenTrial | None:
        """The trial that finished this run: a complete one, else the last diverged one not marked for a retry."""
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        diverged = [t for t in trials if t.state == TrialState.FAIL and "row" in t.user_attrs and t.number >= retry_below]
        found = complete or diverged
        return found[-1] if found else None

    def retry_diverged(self) -> None:
        """`--retry-diverged`: every diverged run recorded so far is to be trained again (by any worker)."""
        self.study.set_user_attr("retry_diverged_below", len(self.study.get_trials(deepcopy=False)))

    def reconcile(self) -> list[int]:
        """Fail the trials of dead workers, and queue every run of this grid that has neither a live nor a finished
        trial (first start, a dead worker's run, an interrupted one, a diverged one to retry). Returns the numbers of
        the trials failed."""
        reclaimed = reclaim_dead_workers(self.study)
        by_run, below = self.trials(), self._retry_below()
        for run_id in self.plans:
            trials = by_run.get(run_id, [])
            if not any(_live(t) for t in trials) and self.finished(trials, below) is None:
                self.study.enqueue_trial({}, user_attrs={"run": run_id})
        return reclaimed

    def claim(self) -> Claim | None:
        """The next queued run of this grid, now RUNNING for this worker; None when none is queued."""
        storage = self.study._storage
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            run_id = t.user_attrs.get("run")
            if run_id not in self.plans:  # a run of a grid that grew since this worker's spec
                continue
            try:
                if not storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                    continue  # another worker took it first
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            storage.set_trial_user_attr(t._trial_id, "worker", worker_id())
            others, below = self.trials()[run_id], self._retry_below()
            if self.finished(others, below) is not None or \
                    any(_live(o) and o.number < t.number for o in others):
                storage.set_trial_user_attr(t._trial_id, "duplicate", True)
                self.study.tell(t.number, state=TrialState.FAIL)
                continue
            retry = any(o.state == TrialState.FAIL and "row" in o.user_attrs and o.number < below for o in others)
            return Claim(t._trial_id, t.number, run_id, retry)
        return None

    def finish(self, claim: Claim, row: dict[str, Any], run_dir: Path) -> bool:
        """Record a trained run: its row and files in the trial, COMPLETE (or FAIL when it diverged). False when the
        trial was finished meanwhile by another worker that took this one for dead."""
        storage = self.study._storage
        try:
            storage.set_trial_user_attr(claim.trial_id, "row", json.dumps(row, default=str))
            for name in STORED_FILES:
                if (run_dir / name).is_file():
                    storage.set_trial_user_attr(claim.trial_id, name, (run_dir / name).read_text())
            if row.get("status", "ok") == "ok":
                self.study.tell(claim.number, float(row["psnr_mean"]))
            else:
                storage.set_trial_user_attr(claim.trial_id, "fail_reason", str(row.get("reason", "")))
                self.study.tell(claim.number, state=TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError):
            return False
        return True

    def release(self, claim: Claim, why: str) -> None:
        """Give a run back (Ctrl-C, an error): its trial fails without a row, so the run is queued again."""
        try:
            self.study._storage.set_trial_user_attr(claim.trial_id, "interrupted", why[:300])
            self.study.tell(claim.number, state=TrialState.FAIL)
        except Exception:  # the storage is gone too: the trial's worker is seen dead later, with the same effect
            pass

    def progress(self) -> tuple[int, int]:
        """(finished runs, in flight: queued or running) of this grid."""
        by_run, below = self.trials(), self._retry_below()
        done = sum(self.finished(by_run.get(r, []), below) is not None for r in self.plans)
        flying = sum(any(_live(t) for t in by_run.get(r, [])) for r in self.plans)
        return done, flying

    def finished_runs(self) -> dict[str, FrozenTrial]:
        """Each finished run's trial, this spec's runs first in grid order, then any others the study holds."""
        by_run, below = self.trials(), self._retry_below()
        order = list(self.plans) + sorted(r for r in by_run if r not in self.plans)
        found = {r: self.finished(by_run.get(r, []), below) for r in order}
        return {r: t for r, t in found.items() if t is not None}


def _live(trial: FrozenTrial) -> bool:
    return trial.state in (TrialState.WAITING, TrialState.RUNNING)


def open_grid_study(name: str, url: str, *, create: bool) -> optuna.Study:
    """The grid's study, created when missing (several workers may race to create it)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # cebench prints its own line per run
    missing = f"no study {name!r} in {shown(url)}: run `cebench run SPEC --storage URL` first"
    local = journal_path(url) or (Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None)
    if not create and local is not None and not local.is_file():
        raise UserError(missing)  # do not create an empty storage just to look into it
    for attempt in range(3):
        storage = open_storage(url)
        try:
            if create:
                return optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                           load_if_exists=True)  # the value of a run: its hole PSNR
            return optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            raise UserError(missing) from None
        except Exception as e:  # e.g. two workers creating the tables at once: try again
            if attempt == 2:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise UserError(f"--storage {shown(url)}: cannot open study {name!r} ({first})") from None
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------------------------------------------------
# A worker


def work(
    store: GridStore, spec_dir: Path, device: torch.device, *, console: Console, progress: Progress | None = None,
    label: str = "",
) -> int:
    """Claim and train runs of the grid until every run is finished (waiting while runs are in flight elsewhere, so a
    dead worker's run is retried); returns how many runs this worker trained."""
    splits = single_run.SplitCache(device, lambda line: console.print(f"[dim]{label}{line}"))
    queue_lock = FileLock(spec_dir / QUEUE_LOCK)  # on one machine, looking for runs and claiming one is atomic
    trained = 0
    while True:
        with queue_lock:
            for number in store.reconcile():
                console.print(f"{label}trial {number}: its worker is gone (killed?); its run is queued again")
            claim = store.claim()
        if claim is None:
            if store.progress()[1] == 0:
                return trained
            time.sleep(POLL_S)  # runs in flight elsewhere: if their worker dies, this one takes them over
            continue
        trained += _run_claim(store, claim, spec_dir, device, splits, console, progress, label)


def _run_claim(
    store: GridStore, claim: Claim, spec_dir: Path, device: torch.device, splits: single_run.SplitCache,
    console: Console, progress: Progress | None, label: str,
) -> int:
    """Train (or record, when its result.json is already here) the claimed run; 1 when it was trained."""
    plan, run_dir = store.plans[claim.run_id], spec_dir / claim.run_id
    try:
        with Heartbeat(store.study, claim.trial_id):
            done = read_result(run_dir)
            status = None if done is None else done.get("status", "ok")
            if done is not None and (status == "ok" or not claim.retry_diverged):
                row, trained = done, 0
                console.print(f"{label}[dim]{claim.run_id}: finished earlier in {run_dir}, recorded")
            else:
                if done is not None:  # a diverged run retried from scratch: its checkpoint leads to the same divergence
                    remove_runs(spec_dir, [claim.run_id], tables=False)
                remove_temp_files(run_dir)  # what a worker killed on this run left half-written
                row = single_run.train_or_record_divergence(store.spec, plan, run_dir, splits, device, progress,
                                                            extra={"worker": f"{worker_id()} {device}"})
                trained = 1
    except BaseException as e:
        store.release(claim, f"{type(e).__name__}: {e}")
        raise
    if not store.finish(claim, row, run_dir):
        console.print(f"{label}[yellow]{claim.run_id}: another worker took this one for dead and queued the run "
                      "again[/]; this row stays in its folder")
    with FileLock(spec_dir / RESULTS_LOCK):
        write_results(spec_dir, list(store.plans))
    if trained:
        console.print(label + single_run.outcome(row))
    return trained


# ----------------------------------------------------------------------------------------------------------------------
# The one table, on any machine


def assemble_results(store: GridStore, spec_dir: Path, console: Console | None = None) -> pd.DataFrame:
    """Write every finished run of the study into `spec_dir` (rows trained on other machines get a folder with their
    result.json, per-image scores and history, so `cebench report` works here) and rebuild `results.csv`."""
    console = console or Console(stderr=True)
    finished = store.finished_runs()
    imported = 0
    with FileLock(spec_dir / RESULTS_LOCK):
        for run_id, trial in finished.items():
            run_dir = spec_dir / run_id
            if read_result(run_dir) is not None:
                continue
            if run_dir.exists():  # a partial attempt here, finished elsewhere: its checkpoint would not match the row
                remove_runs(spec_dir, [run_id], tables=False)
            run_dir.mkdir(parents=True)
            for name in STORED_FILES:
                if isinstance(text := trial.user_attrs.get(name), str):
                    with atomic_path(run_dir / name) as tmp:
                        tmp.write_text(text)
            write_text(run_dir / RESULT, json.dumps(json.loads(trial.user_attrs["row"]), indent=2))
            imported += 1
        table = write_results(spec_dir, list(finished))
    missing = len(store.plans) - sum(r in finished for r in store.plans)
    console.print(f"{store.name} in {shown(store.url)}: {len(finished)} runs finished"
                  + (f" ({imported} trained elsewhere, written into {spec_dir})" if imported else "")
                  + (f"; {missing} not yet" if missing else ""))
    return table
