"""`cebench tune`: an Optuna search over the loss weights and learning rates, persistent, resumable, several workers.

A tune spec names a base variant, the data, a budget, the objective(s) measured on the validation split (disjoint from
the test split) and a search space of `Variant` float fields. Each trial builds a variant and calls the same `fit` as
`cebench run` in `runs/<name>/trial<N>/`; with one objective it reports it after every epoch so that the pruner (median,
hyperband or none) can stop poor trials. A trial whose loss diverges is recorded as failed with the reason and the study
goes on. Finished trials are scored on the test split and appended to `runs/<name>/results.csv` in the same format as
`cebench run`; `trials.csv`, `pareto.csv` (several objectives) and `plots/*.png` are rewritten at the end of each tune.

The study (named after the spec) lives in a storage given as a URL, so running the same command again continues it:

- `sqlite:///PATH` (default `runs/<name>/study.db`): one worker at a time.
- `journal:PATH` or a path ending in `.log`: Optuna's journal file, safe for several workers on one machine.
- `postgresql://user@host/db` (or `mysql://...`): several machines; needs a driver (`pip install psycopg2-binary`).

Budget: `trials` is the number of trials the study should hold, counted over every worker and every earlier run
(complete, pruned, diverged, and those running in live workers). Running the command again after an interruption
finishes the budget; a larger `--trials` extends the study. A trial interrupted by Ctrl-C or a killed worker is marked
failed and not counted, so at most the trial in flight is lost (a worker killed on another machine is noticed through
the database's heartbeats after 5 minutes). On one machine, checking the budget and starting a trial is atomic between
workers; across machines, simultaneous starts can exceed the budget by one trial per extra worker. `timeout` stops
starting trials; the trial in flight finishes.

Reproducibility: the sampler (TPE, which also handles several objectives) is re-seeded before every trial with
`seed + number of trials already in the study`, so the same spec and seed on one worker proposes the same trials,
resumed or not. Every trial trains with the spec's seed, so trials differ only by their hyperparameters. Several
workers need no seeds of their own: they see different trial counts, and Optuna numbers every trial uniquely.
"""

from __future__ import annotations

import fcntl
import functools
import importlib.util
import math
import os
import re
import socket
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import optuna
import pandas as pd
import torch
import yaml
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState
from pydantic import Field, ValidationInfo, field_validator
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from cebench.checkpoint import write_run_config
from cebench.config import DataConfig, Frozen, Variant
from cebench.errors import UserError, choices
from cebench.evaluate import evaluate
from cebench.imageio import atomic_path, write_text
from cebench.metrics import summarize
from cebench.registry import create_variant
from cebench.results import RESULTS_CSV, append_rows
from cebench.run import SplitCache, Splits, make_progress, score_run
from cebench.spec import read_yaml, validate
from cebench.task import Task
from cebench.train import Diverged, fit

Direction = Literal["maximize", "minimize"]
TUNABLE = tuple(k for k, f in Variant.model_fields.items() if f.annotation is float)
_HARNESS = ("l1", "l2", "psnr", "ssim", "sharpness")
_HIGHER_IS_BETTER = {"psnr", "ssim", "sharpness"}
# Objective metrics and their default directions: every harness key on the validation split, and the training time.
METRICS: dict[str, Direction] = {
    **{f"val_{region}{m}": "maximize" if m in _HIGHER_IS_BETTER else "minimize"
       for region in ("", "luma_", "image_", "image_luma_") for m in _HARNESS},
    "train_time_s": "minimize",
}
HEARTBEAT_S = 60  # server databases only: a trial whose worker is silent for 5 heartbeats is failed by the others


# ----------------------------------------------------------------------------------------------------------------------
# Spec


def parse_duration(value: str | float) -> float:
    """Seconds from 90, '90s', '30m', '2h', '1h30m', '1.5d'."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().lower().replace(" ", "")
        if not re.fullmatch(r"(\d+(\.\d+)?[smhd])+|\d+(\.\d+)?", text):
            raise ValueError(f"{value!r} is not a duration; expected e.g. 90s, 30m, 2h or 1h30m")
        unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
        seconds = sum(float(n) * unit[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)([smhd]?)", text))
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(f"{value!r}: a timeout must be positive")
    return seconds


class Range(Frozen):
    """A float search range, inclusive; `log` samples uniformly in log space."""

    low: float = Field(allow_inf_nan=False)
    high: float = Field(allow_inf_nan=False)
    log: bool = False

    @field_validator("high")
    @classmethod
    def _nonempty(cls, high: float, info: ValidationInfo) -> float:
        low = info.data.get("low")
        if low is not None and not low < high:
            raise ValueError(f"empty or inverted range: low {low:g} must be below high {high:g}")
        return high

    @field_validator("log")
    @classmethod
    def _positive_for_log(cls, log: bool, info: ValidationInfo) -> bool:
        if log and info.data.get("low", 1.0) <= 0:
            raise ValueError(f"a log-scale range needs low > 0 (got low {info.data['low']:g})")
        return log


class TuneSpec(Frozen):
    """A search: base preset + fixed overrides, data, budget, objective(s) on the validation split, search space."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    preset: str = "pathak2016"
    data: DataConfig = Field(default_factory=lambda: DataConfig.model_validate({}))
    overrides: dict[str, Any] = Field(default_factory=dict)
    seed: int = Field(0, description="training seed of every trial, and the sampler's seed")
    trials: int = Field(20, gt=0, description="trials the study should hold (all workers, all runs)")
    timeout: float | str | None = Field(None, description="stop starting trials after this long, e.g. 2h")
    objective: list[str] = Field(default_factory=lambda: ["val_psnr"], min_length=1, description="one or several")
    direction: list[Direction] | None = Field(None, description="one per objective; default: the metric's natural one")
    pruner: Literal["median", "hyperband", "none"] = Field("median", description="stops poor trials (one objective)")
    startup_trials: int = Field(5, ge=0, description="random trials before TPE models the space and pruning starts")
    storage: str | None = Field(None, description="study storage URL (default sqlite:///runs/<name>/study.db)")
    space: dict[str, Range] = Field(min_length=1)
    tie_lambdas: bool = Field(False, description="lambda_rec = 1 - lambda_adv, as Pathak's wtl2")

    @field_validator("overrides")
    @classmethod
    def _known_fields(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(v) - set(Variant.model_fields))
        if unknown:
            raise ValueError(f"unknown variant field {unknown[0]!r}; valid: {choices(Variant.model_fields)}")
        return v

    @field_validator("timeout")
    @classmethod
    def _duration(cls, v: float | str | None) -> float | None:
        return None if v is None else parse_duration(v)

    @field_validator("objective", "direction", mode="before")
    @classmethod
    def _listed(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("objective")
    @classmethod
    def _known_metrics(cls, names: list[str]) -> list[str]:
        for name in names:
            if name not in METRICS:
                raise ValueError(f"unknown objective {name!r}; valid: val_l1, val_l2, val_psnr, val_ssim, "
                                 "val_sharpness (also with val_luma_, val_image_, val_image_luma_), train_time_s")
        if len(set(names)) != len(names):
            raise ValueError("objectives must be distinct metrics")
        return names

    @field_validator("direction")
    @classmethod
    def _one_per_objective(cls, v: list[Direction] | None, info: ValidationInfo) -> list[Direction] | None:
        n = len(info.data.get("objective") or [])
        if v is not None and n and len(v) != n:
            raise ValueError(f"give one direction per objective ({n})")
        return v

    @field_validator("space", mode="before")
    @classmethod
    def _tunable(cls, v: Any) -> Any:
        for name, rng in (v.items() if isinstance(v, dict) else ()):
            if name not in TUNABLE:
                raise ValueError(f"unknown parameter {name!r}; valid (float variant fields): {choices(TUNABLE)}")
            extra = sorted(set(rng) - set(Range.model_fields)) if isinstance(rng, dict) else []
            if extra:  # here rather than by pydantic: cebench.spec.validate names fields of models, not of mappings
                raise ValueError(f"{name}: unknown field {extra[0]!r}; valid: {choices(Range.model_fields)}")
        return v

    @field_validator("tie_lambdas")
    @classmethod
    def _tied(cls, tie: bool, info: ValidationInfo) -> bool:
        space: dict[str, Range] = info.data.get("space") or {}
        fixed = set(info.data.get("overrides") or {})
        if tie and "lambda_adv" not in space:
            raise ValueError("needs lambda_adv in space (lambda_rec = 1 - lambda_adv)")
        if tie and ("lambda_rec" in space or "lambda_rec" in fixed):
            raise ValueError("lambda_rec follows lambda_adv; remove it from space and overrides")
        if tie and space["lambda_adv"].high > 1:
            raise ValueError(f"space.lambda_adv.high {space['lambda_adv'].high:g} > 1 would make lambda_rec negative")
        return tie

    @property
    def objectives(self) -> list[str]:
        return list(self.objective)

    @property
    def directions(self) -> list[Direction]:
        return list(self.direction) if self.direction is not None else [METRICS[m] for m in self.objective]

    @property
    def timeout_s(self) -> float | None:
        return None if self.timeout is None else float(self.timeout)

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1

    def variant(self, params: dict[str, float]) -> tuple[Variant, dict[str, Any]]:
        """The variant of a trial and every override it applies to the preset (fixed, searched, tied)."""
        overrides = {**self.overrides, **params}
        if self.tie_lambdas and "lambda_adv" in params:
            overrides["lambda_rec"] = 1.0 - params["lambda_adv"]
        return create_variant(self.preset, **overrides), overrides


def load_tune_spec(path: Path) -> TuneSpec:
    """Read and validate a tune spec; every problem is one line naming the file and the field."""
    spec: TuneSpec = validate(TuneSpec, read_yaml(path), path)
    clash = sorted(set(spec.space) & set(spec.overrides))
    if clash:
        raise UserError(f"{path}: overrides.{clash[0]}: also searched in space; keep it in one of them")
    try:
        base, _ = spec.variant({})
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    for name, rng in spec.space.items():  # both ends of every range must make a valid variant
        for end in ("low", "high"):
            try:
                spec.variant({name: getattr(rng, end)})
            except UserError as e:
                raise UserError(f"{path}: space.{name}.{end}: {str(e).removeprefix(name + ': ')}") from None
    if any(m.startswith("val_") for m in spec.objectives) and spec.data.n_val == 0:
        raise UserError(f"{path}: data.n_val: the objective {spec.objectives[0]} needs a validation split (n_val > 0)")
    if spec.pruner == "hyperband" and base.epochs < 2:
        raise UserError(f"{path}: pruner: hyperband needs at least 2 epochs per trial (got {base.epochs})")
    return spec


# ----------------------------------------------------------------------------------------------------------------------
# Storage and study


def default_storage(study_dir: Path) -> str:
    return f"sqlite:///{(study_dir / 'study.db').resolve()}"


def _shown(url: str) -> str:
    """The URL with its password hidden, for messages."""
    if "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def _journal_path(url: str) -> Path | None:
    if url.startswith("journal:"):
        return Path(url.removeprefix("journal:"))
    return Path(url) if "://" not in url and url.endswith(".log") else None


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The Optuna storage behind a URL; an unreachable or malformed one is a one-line UserError."""
    journal = _journal_path(url)
    scheme = url.split("://", 1)[0].split("+", 1)[0] if "://" in url else ""
    if journal is None and scheme not in ("sqlite", "postgresql", "mysql"):
        raise UserError(f"--storage {_shown(url)}: unsupported; valid: sqlite:///PATH, journal:PATH (or PATH.log), "
                        "postgresql://USER@HOST/DB, mysql://USER@HOST/DB")
    try:
        if journal is not None:
            journal.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
        if scheme == "sqlite":
            return optuna.storages.RDBStorage(url)
        return _server_storage(_with_driver(url), {"connect_args": {"connect_timeout": 10}}
                               if scheme == "postgresql" else {})
    except ImportError:
        raise UserError(f"--storage {_shown(url)}: no database driver for {scheme} is installed "
                        "(PostgreSQL: pip install psycopg2-binary)") from None
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"--storage {_shown(url)}: cannot open the study storage ({first})") from None


def _with_driver(url: str) -> str:
    """`postgresql://` with the driver that is installed (SQLAlchemy 2.1 means psycopg 3 by it, 2.0 psycopg2)."""
    if url.startswith("postgresql://"):
        for module in ("psycopg", "psycopg2"):
            if importlib.util.find_spec(module) is not None:
                return url.replace("postgresql://", f"postgresql+{module}://", 1)
    return url


def _server_storage(url: str, engine_kwargs: dict[str, Any]) -> optuna.storages.RDBStorage:
    """A database server shared by several machines: heartbeats let workers fail the trials of a dead one."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S,
                                                  grace_period=5 * HEARTBEAT_S)
        except (IntegrityError, ProgrammingError):  # several workers creating the tables at once
            if attempt == 2:
                raise
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def make_sampler(spec: TuneSpec, n_trials_before: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=spec.seed + n_trials_before, n_startup_trials=spec.startup_trials)


def make_pruner(spec: TuneSpec) -> optuna.pruners.BasePruner:
    if spec.pruner == "none" or spec.multi:  # Optuna prunes single-objective studies only
        return optuna.pruners.NopPruner()
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=spec.variant({})[0].epochs)
    return optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials, n_warmup_steps=2)  # never after epoch 1


def open_study(spec: TuneSpec, url: str, *, create: bool = True) -> optuna.Study:
    """Create the study named after the spec, or load it when it exists (several workers may race to create it)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # cebench prints its own line per trial
    missing = f"no study {spec.name!r} in {_shown(url)}: run `cebench tune` on this spec first"
    local = _journal_path(url) or (Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None)
    if not create and local is not None and not local.is_file():
        raise UserError(missing)  # do not create an empty database just to look into it
    for attempt in range(3):
        storage = open_storage(url)
        try:
            if not create:
                study = optuna.load_study(study_name=spec.name, storage=storage, pruner=make_pruner(spec))
            else:
                study = optuna.create_study(study_name=spec.name, storage=storage, directions=spec.directions,
                                            sampler=make_sampler(spec, 0), pruner=make_pruner(spec),
                                            load_if_exists=True)
            break
        except KeyError:
            raise UserError(missing) from None
        except Exception as e:  # e.g. two workers creating the tables at once: try again
            if attempt == 2:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise UserError(f"--storage {_shown(url)}: cannot open study {spec.name!r} ({first})") from None
            time.sleep(0.5 + attempt)
    found = [d.name.lower() for d in study.directions]
    if found != spec.directions:
        raise UserError(f"study {spec.name!r} in {_shown(url)} optimises {found}, the spec says {spec.directions}; "
                        "rename the spec or use another --storage")
    return study


def counted(trial: FrozenTrial) -> bool:
    """Whether a trial uses the budget: all but interrupted ones (failed without a `fail_reason`: Ctrl-C, a crash, a
    killed worker)."""
    return trial.state != TrialState.FAIL or "fail_reason" in trial.user_attrs


def reclaim_dead_workers(study: optuna.Study) -> list[int]:
    """Fail the running trials of workers on this machine that no longer exist (killed). Returns their numbers."""
    host = socket.gethostname()
    reclaimed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner_host, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        if owner_host != host or not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        try:
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            reclaimed.append(t.number)
        except (RuntimeError, ValueError):  # another worker got there first
            pass
    return reclaimed


def worker_id() -> str:
    """This process, as recorded on its trials: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FileLock:
    """An exclusive lock between the processes on this machine (`fcntl.flock`; released when a process dies)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: Any = None

    def acquire(self) -> None:
        if self._handle is None:
            self._handle = open(self.path, "a")  # noqa: SIM115 (held across calls)
            fcntl.flock(self._handle, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# ----------------------------------------------------------------------------------------------------------------------
# Objective


class Objective:
    """One trial: variant from the trial's parameters, `fit`, objective values on the validation split, test row."""

    def __init__(self, spec: TuneSpec, study_dir: Path, splits: Splits, device: torch.device,
                 progress: Progress | None = None, on_status: Callable[[str], None] = lambda s: None,
                 on_start: Callable[[], None] = lambda: None) -> None:
        self.spec, self.study_dir, self.splits, self.device = spec, study_dir, splits, device
        self.progress, self.on_status, self.on_start = progress, on_status, on_start

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        trial.set_user_attr("worker", worker_id())
        self.on_start()  # the trial is in the storage now: other workers count it
        params = {k: trial.suggest_float(k, r.low, r.high, log=r.log) for k, r in self.spec.space.items()}
        variant, overrides = self.spec.variant(params)
        trial.set_user_attr("overrides", overrides)
        try:
            return self._train(trial, variant)
        except Diverged as e:
            trial.set_user_attr("fail_reason", str(e))
            raise
        except optuna.TrialPruned:
            raise
        except BaseException as e:  # Ctrl-C or a crash: failed, not counted in the budget
            trial.set_user_attr("interrupted", f"{type(e).__name__}: {e}"[:300])
            raise

    def _train(self, trial: optuna.Trial, variant: Variant) -> float | list[float]:
        spec, run_id = self.spec, f"trial{trial.number}"
        run_dir = self.study_dir / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        write_run_config(run_dir, variant, spec.data, spec.seed)
        primary = spec.objectives[0]

        def on_epoch(epoch: int, record: dict[str, float]) -> None:
            value = record.get(primary)
            self.on_status(f"trial {trial.number} epoch {epoch}/{variant.epochs}"
                           + (f" {primary} {value:.4g}" if value is not None else ""))
            if spec.multi or value is None:
                return
            if not math.isfinite(value):
                raise Diverged(f"{primary} is {value} after epoch {epoch}")
            trial.report(value, epoch)
            if epoch < variant.epochs and trial.should_prune():  # pruning after the last epoch would save nothing
                trial.set_user_attr("pruned_at_epoch", epoch)
                raise optuna.TrialPruned(f"{primary} {value:.4g} after epoch {epoch}")

        with open(run_dir / "train.log", "a") as log_file:
            def log(line: str) -> None:
                log_file.write(line + "\n")
                log_file.flush()

            log(f"trial {trial.number} of study {spec.name} by {worker_id()} on {self.device}: {variant.model_dump_json()}")
            result = fit(variant, self.splits.train, self.splits.val, spec.seed, run_dir, progress=self.progress,
                         log=log, on_epoch=on_epoch)
            val = evaluate(result.generator, Task(variant), self.splits.val, amp=self.device.type == "cuda")
            available = {f"val_{k.removesuffix('_mean')}": v for k, v in summarize(val).items() if k.endswith("_mean")}
            available["train_time_s"] = result.train_time_s
            values = {m: available.get(m, math.nan) for m in spec.objectives}
            for m, v in values.items():
                if not math.isfinite(v):
                    raise Diverged(f"{m} is {v} after training")
            row = score_run(spec.name, run_id, variant, spec.data, spec.seed, result, self.splits.test, run_dir,
                            self.device, extra={"trial": trial.number, "worker": worker_id(), **values})
            with FileLock(self.study_dir / ".results.lock"):
                append_rows(self.study_dir / RESULTS_CSV, [row])
            log(f"objective {values}; test hole PSNR {row['psnr_mean']:.3f} dB")
        trial.set_user_attr("test_psnr", row["psnr_mean"])
        trial.set_user_attr("test_ssim", row["ssim_mean"])
        return [values[m] for m in spec.objectives] if spec.multi else values[primary]


# ----------------------------------------------------------------------------------------------------------------------
# The tune loop


def run_tune(
    spec: TuneSpec, *, out_root: Path, device: torch.device, trials: int | None = None,
    timeout_s: float | None = None, storage: str | None = None, console: Console | None = None,
) -> optuna.Study:
    """Run trials until the study holds `trials` (default: the spec's) or `timeout_s` passes; then write the trials
    table, the plots and (several objectives) the Pareto front. Returns the study."""
    console = console or Console(stderr=True)
    budget, timeout_s = trials or spec.trials, timeout_s or spec.timeout_s
    study_dir = out_root / spec.name
    study_dir.mkdir(parents=True, exist_ok=True)
    url = storage or spec.storage or default_storage(study_dir)
    study = open_study(spec, url)
    write_text(study_dir / "tune_spec.json", spec.model_dump_json(indent=2))
    splits = SplitCache(device, lambda line: console.print(f"[dim]{line}"))
    deadline = time.monotonic() + timeout_s if timeout_s else None
    console.print(f"study {spec.name!r} in {escape(_shown(url))}: budget {budget} trials, objective "
                  + ", ".join(f"{m} ({d})" for m, d in zip(spec.objectives, spec.directions, strict=True)))

    with make_progress(console) as progress:
        overall = progress.add_task(f"{spec.name}: trials", total=budget, ips=0.0, info="")

        def status(current: str = "") -> None:
            all_trials = study.get_trials(deepcopy=False)
            n = sum(counted(t) for t in all_trials)
            progress.update(overall, completed=min(n, budget), info=f"{summary_line(spec, study, all_trials)}"
                            + (f" | {current}" if current else ""))

        # Checking the budget and starting a trial is atomic between the workers of one machine.
        ask_lock = FileLock(study_dir / ".ask.lock")
        objective = Objective(spec, study_dir, splits.get(spec.data, spec.variant({})[0].image_size), device,
                              progress, status, on_start=ask_lock.release)
        ran = 0
        while True:
            with ask_lock:
                for number in reclaim_dead_workers(study):
                    progress.console.print(f"trial {number}: its worker is gone (killed?); marked failed, not counted")
                all_trials = study.get_trials(deepcopy=False)
                status()
                if sum(counted(t) for t in all_trials) >= budget:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    progress.console.print(f"timeout reached; run again to continue up to {budget} trials")
                    break
                study.sampler = make_sampler(spec, len(all_trials))
                study.optimize(objective, n_trials=1, catch=(Diverged,),
                               callbacks=[lambda s, t: progress.console.print(trial_line(spec, s, t))])
            ran += 1
            for task in progress.tasks:  # a pruned or failed trial leaves its epoch bar behind
                if task.id != overall:
                    progress.update(task.id, visible=False)
        status()
    console.print(f"this worker ({worker_id()}) ran {ran} trial{'s' * (ran != 1)}")
    write_outputs(study, spec, study_dir, console)
    return study


def summary_line(spec: TuneSpec, study: optuna.Study, all_trials: list[FrozenTrial] | None = None) -> str:
    all_trials = all_trials if all_trials is not None else study.get_trials(deepcopy=False)
    states = [t.state for t in all_trials]
    failed = sum(t.state == TrialState.FAIL and counted(t) for t in all_trials)
    interrupted = states.count(TrialState.FAIL) - failed
    text = (f"{states.count(TrialState.COMPLETE)} done, {states.count(TrialState.PRUNED)} pruned, {failed} failed, "
            f"{states.count(TrialState.RUNNING)} running" + (f", {interrupted} interrupted" if interrupted else ""))
    if TrialState.COMPLETE not in states:
        return text
    if spec.multi:
        return text + f"; Pareto front: {len(study.best_trials)} trials"
    best = study.best_trial
    return text + f"; best {spec.objectives[0]} {best.value:.4g} (trial {best.number})"


def trial_line(spec: TuneSpec, study: optuna.Study, t: FrozenTrial) -> str:
    params = " ".join(f"{k}={v:.3g}" for k, v in t.params.items())
    if t.state == TrialState.COMPLETE:
        values = ", ".join(f"{m} {v:.4g}" for m, v in zip(spec.objectives, t.values, strict=True))
        return f"trial {t.number}: {values}; test PSNR {t.user_attrs.get('test_psnr', math.nan):.2f} dB ({params})"
    if t.state == TrialState.PRUNED:
        return f"trial {t.number}: pruned after epoch {t.user_attrs.get('pruned_at_epoch', '?')} ({params})"
    reason = t.user_attrs.get("fail_reason") or t.user_attrs.get("interrupted", "failed")
    return f"trial {t.number}: [red]failed[/]: {escape(reason)} ({params})"


# ----------------------------------------------------------------------------------------------------------------------
# Outputs: trials table, plots, Pareto front, best config


def write_outputs(study: optuna.Study, spec: TuneSpec, study_dir: Path, console: Console) -> list[Path]:
    """`trials.csv`, PNG plots under `plots/`, and for several objectives `pareto.csv`; a summary on the console."""
    written = [study_dir / "trials.csv"]
    with atomic_path(written[0]) as tmp:
        study.trials_dataframe().to_csv(tmp, index=False)
    written += write_plots(study, spec, study_dir / "plots", console)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if spec.multi and complete:
        front = pareto_table(study, spec)
        with atomic_path(study_dir / "pareto.csv") as tmp:
            front.to_csv(tmp, index=False)
        written.append(study_dir / "pareto.csv")
        print_table(console, front, f"{spec.name}: Pareto front ({len(front)} of {len(complete)} finished trials)")
    elif complete:
        top = sorted(complete, key=lambda t: t.values[0], reverse=spec.directions[0] == "maximize")[:5]
        print_table(console, pd.DataFrame([_trial_record(spec, t) for t in top]), f"{spec.name}: best trials")
    console.print(summary_line(spec, study) + f" -> {study_dir}")
    return written


def _trial_record(spec: TuneSpec, t: FrozenTrial) -> dict[str, Any]:
    return {"trial": t.number, **dict(zip(spec.objectives, t.values, strict=True)),
            "test_psnr": t.user_attrs.get("test_psnr", math.nan), **t.params}


def pareto_table(study: optuna.Study, spec: TuneSpec) -> pd.DataFrame:
    return pd.DataFrame([_trial_record(spec, t) for t in sorted(study.best_trials, key=lambda t: t.number)])


def print_table(console: Console, frame: pd.DataFrame, title: str) -> None:
    table = Table(title=title)
    for col in frame.columns:
        table.add_column(str(col), justify="right")
    for _, row in frame.iterrows():
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)


def write_plots(study: optuna.Study, spec: TuneSpec, plot_dir: Path, console: Console) -> list[Path]:
    """Optuna's matplotlib plots that matter, as PNG; a plot that needs more trials is skipped with a note."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # files only; leave an interactive session's backend alone
    import matplotlib.pyplot as plt
    import numpy as np
    from optuna.visualization import matplotlib as ovm

    n_complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    names = list(spec.space)
    pair = ["lambda_adv", "lr_g"] if {"lambda_adv", "lr_g"} <= set(names) else names[:2]
    plots: dict[str, tuple[int, Callable[[], Any]]] = {}  # name -> (complete trials needed, plot)
    for i, metric in enumerate(spec.objectives):
        kw: dict[str, Any] = {"target": functools.partial(_value, i=i) if spec.multi else None, "target_name": metric}
        suffix = f"_{metric}" if spec.multi else ""
        plots[f"history{suffix}"] = (1, functools.partial(ovm.plot_optimization_history, study, **kw))
        plots[f"importances{suffix}"] = (2, functools.partial(ovm.plot_param_importances, study, **kw))
        if len(pair) == 2:
            plots[f"contour{suffix}"] = (2, functools.partial(ovm.plot_contour, study, params=pair, **kw))
    if spec.multi:
        plots["pareto"] = (1, lambda: ovm.plot_pareto_front(study, target_names=spec.objectives))
    elif any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        plots["intermediate"] = (0, lambda: ovm.plot_intermediate_values(study))

    written = []
    for name, (needed, make) in plots.items():
        if n_complete < needed:
            console.print(f"[dim]plot {name}: skipped, needs {needed} finished trials (have {n_complete})")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = make()
            figure = np.ravel(axes)[0].figure
            path = plot_dir / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                figure.savefig(tmp, dpi=110, bbox_inches="tight")
            plt.close(figure)
            written.append(path)
        except Exception as e:  # a plot is a convenience: never lose a finished study to one
            plt.close("all")
            console.print(f"[dim]plot {name}: skipped ({e})")
    return written


def _value(t: FrozenTrial, i: int) -> float:
    return t.values[i]


def best_trial(spec: TuneSpec, study: optuna.Study, number: int | None = None) -> FrozenTrial:
    """The trial `number`, else the best one (several objectives: the Pareto trial best on the first objective)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if number is not None:
        match = [t for t in complete if t.number == number]
        if not match:
            raise UserError(f"study {spec.name!r} has no finished trial {number}; finished: "
                            f"{choices(t.number for t in complete) or 'none'}")
        return match[0]
    if not complete:
        raise UserError(f"study {spec.name!r} has no finished trial yet: run `cebench tune` first")
    if not spec.multi:
        return study.best_trial
    sign = 1.0 if spec.directions[0] == "maximize" else -1.0
    return max(study.best_trials, key=lambda t: sign * t.values[0])


def best_spec_yaml(spec: TuneSpec, study: optuna.Study, number: int | None = None) -> str:
    """A run spec (YAML) with the best trial's parameters, ready for `cebench run`."""
    t = best_trial(spec, study, number)
    overrides = t.user_attrs.get("overrides") or spec.variant(t.params)[1]
    values = ", ".join(f"{m} {v:.6g} ({d})" for m, v, d in zip(spec.objectives, t.values, spec.directions,
                                                               strict=True))
    payload = {
        "name": f"{spec.name}-best",
        "description": f"trial {t.number} of tune study {spec.name}: {values}",
        "preset": spec.preset,
        "data": spec.data.model_dump(mode="json"),
        "overrides": overrides,
        "seeds": [spec.seed],
    }
    header = f"# cebench tune {spec.name}: trial {t.number} of {len(study.trials)}, {values}\n"
    if spec.multi:
        header += f"# Pareto front: trials {choices(sorted(b.number for b in study.best_trials))} (pick one with --trial)\n"
    return header + yaml.safe_dump(payload, sort_keys=False)


# ----------------------------------------------------------------------------------------------------------------------
# Command-line entry point


def tune_cli(
    spec_path: Path, *, trials: int | None = None, timeout: str | None = None, storage: str | None = None,
    best: bool = False, trial: int | None = None, out: Path = Path("runs"), device: str = "auto",
    console: Console | None = None,
) -> None:
    """`cebench tune SPEC`: run (or continue) the study; with `best`, print the best trial's run spec as YAML."""
    spec = load_tune_spec(spec_path)
    if trials is not None and trials < 1:
        raise UserError(f"--trials {trials}: must be at least 1")
    try:
        timeout_s = parse_duration(timeout) if timeout is not None else None
    except ValueError as e:
        raise UserError(f"--timeout {e}") from None
    url = storage or spec.storage or default_storage(out / spec.name)
    if best or trial is not None:
        sys.stdout.write(best_spec_yaml(spec, open_study(spec, url, create=False), trial))
        return
    from cebench.device import pick_device

    run_tune(spec, out_root=out, device=pick_device(device), trials=trials, timeout_s=timeout_s, storage=url,
             console=console)
