"""The study: sampler, pruner, opening it, one trial (`Objective`), the tune loop and its console lines."""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from cebench.checkpoint import write_run_config
from cebench.config import Variant
from cebench.data.folder import split_files
from cebench.data.source import open_pack, pack_rows
from cebench.errors import UserError
from cebench.imageio import remove_temp_files, write_text
from cebench.results import RESULTS_CSV, append_rows
from cebench.run import TUNE_SPEC, SplitCache, Splits, make_progress, run_log, score_run
from cebench.spec import RunPlan, check_batches
from cebench.spec_folder import SPEC_JSON, spec_changes, spec_folder
from cebench.storage import (
    FileLock,
    Heartbeat,
    counted,
    default_storage,
    journal_path,
    open_storage,
    reclaim_dead_workers,
    shown,
    worker_id,
)
from cebench.train import Diverged, fit
from cebench.tune.outputs import summary_line, trial_line, write_outputs
from cebench.tune.spec import TuneSpec


def make_sampler(spec: TuneSpec, n_trials_before: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=spec.seed + n_trials_before, n_startup_trials=spec.startup_trials)


def make_pruner(spec: TuneSpec) -> optuna.pruners.BasePruner:
    if spec.pruning == "none":
        return optuna.pruners.NopPruner()
    if spec.pruning == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=spec.variant({})[0].epochs)
    return optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials, n_warmup_steps=2)  # never after epoch 1


def open_study(spec: TuneSpec, url: str, *, create: bool = True) -> optuna.Study:
    """Create the study named after the spec, or load it when it exists (several workers may race to create it)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # cebench prints its own line per trial
    missing = f"no study {spec.name!r} in {shown(url)}: run `cebench tune` on this spec first"
    local = journal_path(url) or (Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None)
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
                raise UserError(f"--storage {shown(url)}: cannot open study {spec.name!r} ({first})") from None
            time.sleep(0.5 + attempt)
    found = [d.name.lower() for d in study.directions]
    if found != spec.directions:
        raise UserError(f"study {spec.name!r} in {shown(url)} optimises {found}, the spec says {spec.directions}; "
                        "rename the spec or use another --storage")
    if create:
        check_same_search(study, spec, url)
    return study


# A tune spec's fields that may change between runs of one study: its budget and where it is stored.
_BUDGET_FIELDS = {"trials", "timeout", "storage", "description"}


def check_same_search(study: optuna.Study, spec: TuneSpec, url: str) -> None:
    """Trials of one study must be comparable: the search is stored with the study (so every worker, on any machine,
    checks against the same one) and a spec that changed it is refused, naming the fields."""
    search = spec.model_dump(mode="json", exclude=_BUDGET_FIELDS)
    saved = study.user_attrs.get("search")
    if saved is None:
        study.set_user_attr("search", search)
        return
    changes = spec_changes(saved, search)
    if changes:
        raise UserError(f"study {spec.name!r} in {shown(url)} was run with other settings ({'; '.join(changes)}); "
                        "its trials would not compare: give the spec a new name or use another --storage")


# ----------------------------------------------------------------------------------------------------------------------
# Objective


class TrialCrashed(RuntimeError):
    """A trial failed with an error other than divergence; recorded with the reason, and the study goes on."""


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0]


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
        beating = isinstance(trial.study._storage, optuna.storages.JournalStorage)
        try:
            with Heartbeat(trial.study, trial._trial_id) if beating else contextlib.nullcontext():
                return self._train(trial, variant)
        except Diverged as e:
            trial.set_user_attr("fail_reason", str(e))
            raise
        except optuna.TrialPruned:
            raise
        except (UserError, OSError, KeyboardInterrupt) as e:  # the worker's problem, not the trial's: not counted
            trial.set_user_attr("interrupted", f"{type(e).__name__}: {e}"[:300])
            raise
        except Exception as e:  # this trial's settings broke training (out of memory, say): failed and counted
            trial.set_user_attr("fail_reason", f"{type(e).__name__}: {_first_line(e)}"[:300])
            raise TrialCrashed(f"{type(e).__name__}: {_first_line(e)}") from e


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

        with run_log(run_dir) as log:
            log(f"trial {trial.number} of study {spec.name} by {worker_id()} on {self.device}: {variant.model_dump_json()}")
            result = fit(variant, self.splits.train, self.splits.val, spec.seed, run_dir, progress=self.progress,
                         log=log, on_epoch=on_epoch)
            available = {**result.history[-1], "train_time_s": result.train_time_s}  # val_* of the last epoch
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
    study_dir = spec_folder(out_root, spec.name)
    if (study_dir / SPEC_JSON).is_file():
        raise UserError(f"{study_dir} holds the runs of the spec {spec.name!r}; give the tune spec another name")
    check_batches([RunPlan("every trial", spec.variant({})[0], spec.seed, {})], _n_train(spec), "the tune spec's data")
    url = storage or spec.storage or default_storage(study_dir)
    study = open_study(spec, url)
    write_text(study_dir / TUNE_SPEC, spec.model_dump_json(indent=2))
    splits = SplitCache(device, lambda line: console.print(f"[dim]{line}"))
    deadline = time.monotonic() + timeout_s if timeout_s else None
    console.print(f"study {spec.name!r} in {escape(shown(url))}: budget {budget} trials, objective "
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
                    remove_temp_files(study_dir / f"trial{number}")  # what it was writing when it died
                all_trials = study.get_trials(deepcopy=False)
                status()
                if sum(counted(t) for t in all_trials) >= budget:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    progress.console.print(f"timeout reached; run again to continue up to {budget} trials")
                    break
                study.sampler = make_sampler(spec, len(all_trials))
                study.optimize(objective, n_trials=1, catch=(Diverged, TrialCrashed),
                               callbacks=[lambda s, t: progress.console.print(trial_line(spec, s, t))])
            ran += 1
            for task in progress.tasks:  # a pruned or failed trial leaves its epoch bar behind
                if task.id != overall:
                    progress.update(task.id, visible=False)
        status()
    console.print(f"this worker ({worker_id()}) ran {ran} trial{'s' * (ran != 1)}")
    write_outputs(study, spec, study_dir, console)
    return study



def _n_train(spec: TuneSpec) -> int:
    if spec.data.name == "folder" and spec.data.path is not None:
        return len(split_files(spec.data.path, spec.data.n_val, spec.data.n_test, spec.data.n_train)["train"])
    if spec.data.name == "pack":  # also refuses a pack made for another image size, before any work
        return len(pack_rows(spec.data, open_pack(spec.data, spec.variant({})[0].image_size), "train"))
    return spec.data.n_train or 0
