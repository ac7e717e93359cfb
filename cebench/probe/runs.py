"""`cebench probe`: linear-probe and fine-tune every trained run of a spec, into `runs/<spec>/probe.csv`.

One row per (run, task, probe kind, layer): the run's id, seed and every config field, the labelled data, the test
accuracy with its 95% Wilson interval, the chance level, and what the probe chose. The raw-pixel linear probe of the
same labelled images is one more row per image size and channels (run id `pixels-<size>px-<channels>`). Per-image
predictions go to `probe_predictions.csv` beside it, for the paired statistics of `cebench report`. Both files are
rewritten atomically after every run; a run already probed with the same settings is skipped.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.progress import Progress

import cebench
from cebench.checkpoint import RUN, WEIGHTS, load_weights, read_run_config
from cebench.config import DataConfig, ProbeConfig, Variant
from cebench.errors import UserError
from cebench.imageio import atomic_path
from cebench.probe.features import PIXELS, check_layers, encoder_features, layer_names, pixel_features
from cebench.probe.finetune import finetune
from cebench.probe.labels import Labelled, align, check_tasks, default_tasks, load_labelled
from cebench.probe.linear import ProbeScore, linear_probe
from cebench.results import _device_name, git_commit, read_table
from cebench.run import make_progress
from cebench.task import Task

PROBE_CSV = "probe.csv"
PREDICTIONS_CSV = "probe_predictions.csv"


@dataclass(frozen=True)
class Splits:
    train: Labelled
    val: Labelled
    test: Labelled


def find_runs(path: Path) -> tuple[Path, list[Path]]:
    """(the spec folder, the run folders to probe): `path` is one run, or a spec folder whose every run is probed."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such run or spec folder")
    if (path / RUN).is_file():
        read_run_config(path)  # a run without weights stops here
        return path.parent, [path]
    runs = sorted(p for p in path.iterdir() if (p / RUN).is_file())
    if not runs:
        raise UserError(f"{path}: no trained runs in it (folders with {RUN} and {WEIGHTS}; `cebench run SPEC` makes them)")
    for run in runs:
        if not (run / WEIGHTS).is_file():
            raise UserError(f"{run}: run without weights ({WEIGHTS} missing); finish it with `cebench run SPEC --resume` "
                            "or remove the folder")
    return path, runs


def spec_probe_config(spec_dir: Path) -> ProbeConfig | None:
    """The `probe:` section of the spec the runs were made with (runs/<spec>/spec.json), if any."""
    spec = spec_dir / "spec.json"
    if not spec.is_file():
        return None
    section = json.loads(spec.read_text()).get("probe")
    return ProbeConfig.model_validate(section) if section else None


def check_probe(cfg: ProbeConfig, runs: list[tuple[Variant, DataConfig]]) -> None:
    """Every task and layer name against what each run's data and encoder have: bad names stop before any work."""
    for variant, data in runs:
        pdata = probe_data(cfg, data)
        check_tasks(pdata, cfg.tasks or default_tasks(pdata))
        check_layers(Task(variant).build_generator().encoder, cfg.layers or [])


def probe_data(cfg: ProbeConfig, run_data: DataConfig) -> DataConfig:
    """The labelled data: the probe's own, else the run's; its split sizes are the probe's."""
    base = cfg.data or run_data
    return base.model_copy(update={"n_train": cfg.n_train, "n_val": cfg.n_val, "n_test": cfg.n_test})


class SplitCache:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._cache: dict[tuple[str, int], Splits] = {}

    def get(self, data: DataConfig, image_size: int) -> Splits:
        key = (data.model_dump_json(), image_size)
        if key not in self._cache:
            train = load_labelled(data, "train", image_size, self.device)
            val, test = (align(train, load_labelled(data, s, image_size, self.device), s, data.path)
                         for s in ("val", "test"))
            self._cache[key] = Splits(align(train, train, "train", data.path), val, test)
        return self._cache[key]


def probe_runs(path: Path, cfg: ProbeConfig, device: torch.device, *, console: Console | None = None) -> pd.DataFrame:
    """Probe every run under `path` (or the one run `path`); returns the spec's probe table."""
    console = console or Console(stderr=True)
    spec_dir, runs = find_runs(path)
    configs = {run: read_run_config(run) for run in runs}
    check_probe(cfg, [(variant, data) for variant, data, _ in configs.values()])
    table, predictions = _read(spec_dir)
    settings = cfg.model_dump_json()
    splits = SplitCache(device)
    pixel_keys: set[tuple[str, int, str]] = set()
    with make_progress(console) as progress:
        overall = progress.add_task(f"{spec_dir.name}: probes", total=len(runs), ips=0.0, info="")
        for run in runs:
            variant, data, seed = configs[run]
            pdata = probe_data(cfg, data)
            if _done(table, run.name, settings):
                progress.console.print(f"[dim]{run.name}: probed earlier with these settings, skipped")
            else:
                rows, preds = probe_run(run, variant, data, seed, cfg, pdata, splits.get(pdata, variant.image_size),
                                        device, progress)
                table, predictions = _replace(table, predictions, rows, preds, spec_dir)
                progress.console.print(f"{run.name}: " + ", ".join(
                    f"{r['task']} {r['kind']} {r['layer']} {r['accuracy']:.3f}" for r in rows))
            pixel_keys.add((pdata.model_dump_json(), variant.image_size, variant.channels))
            progress.advance(overall)
        for data_json, size, channels in sorted(pixel_keys):
            run_id = f"pixels-{size}px-{channels}"
            if _done(table, run_id, settings):
                continue
            pdata = DataConfig.model_validate_json(data_json)
            rows, preds = probe_pixels(spec_dir.name, run_id, pdata, size, channels, cfg, splits.get(pdata, size),
                                       device)
            table, predictions = _replace(table, predictions, rows, preds, spec_dir)
            progress.console.print(f"{run_id}: " + ", ".join(f"{r['task']} {r['accuracy']:.3f}" for r in rows))
    return table


def probe_run(run: Path, variant: Variant, data: DataConfig, seed: int, cfg: ProbeConfig, pdata: DataConfig,
              splits: Splits, device: torch.device, progress: Progress | None) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """Every probe of one run: rows of the table and per-image predictions."""
    generator = Task(variant).build_generator()
    load_weights(run / WEIGHTS, generator)
    encoder = generator.encoder.to(device)
    gray, size = variant.channels == "gray", variant.image_size
    tasks = list(cfg.tasks or default_tasks(pdata))
    layers = cfg.layers or layer_names(encoder)[-1:]
    base = {"spec": run.parent.name, "run_id": run.name, "seed": seed, **variant.model_dump(mode="json"),
            **{f"data_{k}": v for k, v in data.model_dump(mode="json").items()}}
    results: list[tuple[str, str, str, ProbeScore]] = []
    if "linear" in cfg.kinds:
        feats = [encoder_features(encoder, s.images, size, gray, layers) for s in (splits.train, splits.val, splits.test)]
        for layer in layers:
            for task in tasks:
                results.append((task, "linear", layer, linear_probe(
                    feats[0][layer], _y(splits.train, task), feats[1][layer], _y(splits.val, task),
                    feats[2][layer], _y(splits.test, task))))
    if "finetune" in cfg.kinds:
        for task in tasks:
            results.append((task, "finetune", layer_names(encoder)[-1], finetune(
                encoder, splits.train.images, splits.train.labels[task], splits.test.images, splits.test.labels[task],
                len(splits.train.classes[task]), size=size, gray=gray, epochs=cfg.finetune_epochs, lr=cfg.finetune_lr,
                batch_size=cfg.batch_size, seed=seed, progress=progress, label=f"{run.name} finetune {task}")))
    return _rows(base, cfg, pdata, splits, results, device)


def probe_pixels(spec: str, run_id: str, pdata: DataConfig, size: int, channels: str, cfg: ProbeConfig, splits: Splits,
                 device: torch.device) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """The raw-pixel baseline: the same linear probe on the images themselves (area-averaged to PIXELS x PIXELS)."""
    gray = channels == "gray"
    feats = [pixel_features(s.images, size, gray) for s in (splits.train, splits.val, splits.test)]
    results = [(task, "linear", f"pixels{PIXELS}x{PIXELS}", linear_probe(
        feats[0], _y(splits.train, task), feats[1], _y(splits.val, task), feats[2], _y(splits.test, task)))
        for task in cfg.tasks or default_tasks(pdata)]
    base = {"spec": spec, "run_id": run_id, "seed": None, "image_size": size, "channels": channels}
    return _rows(base, cfg, pdata, splits, results, device)


def _y(split: Labelled, task: str) -> np.ndarray:
    return split.labels[task].numpy()


def _rows(base: dict[str, Any], cfg: ProbeConfig, pdata: DataConfig, splits: Splits,
          results: list[tuple[str, str, str, ProbeScore]], device: torch.device) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    rows, preds = [], []
    for task, kind, layer, s in results:
        rows.append({**base, "task": task, "kind": kind, "layer": layer, "accuracy": s.accuracy, "ci_lo": s.ci_lo,
                     "ci_hi": s.ci_hi, "chance": s.chance, "n_classes": len(splits.train.classes[task]),
                     "classes": "|".join(splits.train.classes[task]), "val_accuracy": s.val_accuracy, "c": s.c,
                     "probe_n_train": len(splits.train.images), "probe_n_val": len(splits.val.images),
                     "probe_n_test": s.n_test, "probe_data": _describe(pdata),
                     "finetune_epochs": cfg.finetune_epochs if kind == "finetune" else None,
                     "finetune_lr": cfg.finetune_lr if kind == "finetune" else None,
                     "probe_config": cfg.model_dump_json(), "device": _device_name(device),
                     "torch_version": torch.__version__, "cebench_version": cebench.__version__,
                     "git_commit": git_commit(), "finished_at": now})
        preds.append(pd.DataFrame({"run_id": base["run_id"], "task": task, "kind": kind, "layer": layer,
                                   "test_index": np.arange(s.n_test), "label": _y(splits.test, task),
                                   "prediction": s.predictions}))
    return rows, pd.concat(preds, ignore_index=True)


def _describe(data: DataConfig) -> str:
    if data.name in ("folder", "pack"):
        return f"{data.name} {data.path}"
    return f"landscapes seed {data.seed}"


def _read(spec_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    table = read_table(spec_dir / PROBE_CSV) if (spec_dir / PROBE_CSV).is_file() else pd.DataFrame()
    preds = spec_dir / PREDICTIONS_CSV
    return table, (pd.read_csv(preds) if preds.is_file() else pd.DataFrame())


def _done(table: pd.DataFrame, run_id: str, settings: str) -> bool:
    if table.empty:
        return False
    rows = table[table["run_id"] == run_id]
    return bool(len(rows)) and bool((rows["probe_config"] == settings).all())


def _replace(table: pd.DataFrame, predictions: pd.DataFrame, rows: list[dict[str, Any]], preds: pd.DataFrame,
             spec_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop the run's earlier rows, add the new ones, write both files atomically."""
    run_id = rows[0]["run_id"]
    if not table.empty:
        table = pd.concat([table[table["run_id"] != run_id], pd.DataFrame(rows)], ignore_index=True)
        predictions = pd.concat([predictions[predictions["run_id"] != run_id], preds], ignore_index=True)
    else:
        table, predictions = pd.DataFrame(rows), preds
    for frame, name in ((table, PROBE_CSV), (predictions, PREDICTIONS_CSV)):
        with atomic_path(spec_dir / name) as tmp:
            frame.to_csv(tmp, index=False)
    return table, predictions
