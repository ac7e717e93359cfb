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
- `postgresql://user@host/db` (or `mysql://...`): several machines; needs a driver (`pip install -e '.[postgres]'`).

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

import sys
from pathlib import Path

from rich.console import Console

from cebench.errors import UserError
from cebench.storage import (
    HEARTBEAT_S,
    FileLock,
    counted,
    default_storage,
    open_storage,
    reclaim_dead_workers,
    worker_id,
)
from cebench.tune.outputs import (
    best_spec_yaml,
    best_trial,
    pareto_table,
    print_table,
    summary_line,
    trial_line,
    write_outputs,
    write_plots,
)
from cebench.tune.spec import METRICS, TUNABLE, Direction, Range, TuneSpec, load_tune_spec, parse_duration
from cebench.tune.study import Objective, make_pruner, make_sampler, open_study, run_tune

__all__ = [
    "HEARTBEAT_S", "METRICS", "TUNABLE", "Direction", "FileLock", "Objective", "Range", "TuneSpec", "best_spec_yaml",
    "best_trial", "counted", "default_storage", "load_tune_spec", "make_pruner", "make_sampler", "open_storage",
    "open_study", "pareto_table", "parse_duration", "print_table", "reclaim_dead_workers", "run_tune", "summary_line",
    "trial_line", "tune_cli", "worker_id", "write_outputs", "write_plots",
]


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
