"""Outputs of a study: console lines, trials table, plots, Pareto front, best trial and its run spec."""

from __future__ import annotations

import functools
import math
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.markup import escape

from cebench.errors import UserError, choices
from cebench.imageio import atomic_path
from cebench.storage import counted
from cebench.tune.spec import TuneSpec


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
    """Trials, whole at any width (a table, one record per trial in a narrow terminal, Markdown when redirected)."""
    from cebench.output import Listing, emit

    def show(column: str, value: Any) -> str:
        if isinstance(value, float) and not math.isnan(value):
            return f"{value:.4g}"
        return "-" if value is None or isinstance(value, float) else str(value)

    columns = [str(c) for c in frame.columns]
    emit([Listing(title, columns, frame.astype(object).values.tolist(), numeric=set(columns), show=show)], None, console)


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
