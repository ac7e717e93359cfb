"""`cebench run`: train and score every run of a spec, appending one row per run to `runs/<spec>/results.csv`."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cebench import distributed
from cebench.checkpoint import RESULT, STATE, write_run_config
from cebench.classical import classical_references, reference_means
from cebench.config import DataConfig, Spec, Variant
from cebench.data.folder import split_files
from cebench.data.source import load_split, load_train, open_pack, pack_rows
from cebench.data.stream import TrainSource
from cebench.errors import UserError
from cebench.evaluate import FillOnly, evaluate, sample_grid
from cebench.imageio import atomic_path, write_png, write_text
from cebench.metrics import summarize
from cebench.results import make_row
from cebench.spec import RunPlan, check_batches, expand
from cebench.spec_folder import (
    SPEC_JSON,
    FolderLock,
    check_unchanged,
    clean_leftovers,
    read_result,
    remove_runs,
    spec_folder,
    write_results,
)
from cebench.task import Task
from cebench.train import Diverged, FitResult, fit

TUNE_SPEC = "tune_spec.json"  # written by `cebench tune` into its study folder


@dataclass(frozen=True)
class Splits:
    train: TrainSource  # on the device whole, or a pack streamed to it (`cebench.data.stream`)
    val: torch.Tensor
    test: torch.Tensor
    # Reference scores on `test` already computed by a run of this process (`reference_scores`): the runs of a grid
    # mostly share the fill, the classical methods and often the untrained model (an axis over the loss, say).
    references: dict[tuple[str, ...], dict[str, float]] = field(default_factory=dict, compare=False)


class SplitCache:
    """Loads each (data, image size) once per process: every run of a spec trains and tests on the same tensors."""

    def __init__(self, device: torch.device, log: Callable[[str], None]) -> None:
        self.device, self.log = device, log
        self._cache: dict[tuple[str, int], Splits] = {}

    def get(self, data: DataConfig, image_size: int) -> Splits:
        key = (data.model_dump_json(), image_size)
        if key not in self._cache and data.name == "folder":
            # Under torchrun rank 0 alone packs a data folder into the cache (the others wait), then they read it.
            distributed.on_main(functools.partial(self._load, key, data, image_size))
        if key not in self._cache:
            self._load(key, data, image_size)
        return self._cache[key]

    def _load(self, key: tuple[str, int], data: DataConfig, image_size: int) -> None:
        load = functools.partial(load_split, data, image_size=image_size, device=self.device, log=self.log)
        train = load_train(data, image_size=image_size, device=self.device, log=self.log)
        self._cache[key] = Splits(train, load(split="val"), load(split="test"))


def make_progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[ips]:>8.0f} img/s"), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
    )


def run_spec(
    spec: Spec, out_root: Path, device: torch.device, *, resume: bool = False, overwrite: bool = False,
    retry_diverged: bool = False, console: Console | None = None,
) -> pd.DataFrame:
    """Train and score every run of `spec`; finished runs are skipped with `resume` (diverged ones too, unless
    `retry_diverged`), the spec's earlier runs are deleted with `overwrite`. A run that diverges is recorded as such and
    the grid goes on. Returns the results table.

    Under torchrun every rank calls this and trains each run's shard (`cebench.distributed`); rank 0 alone holds the
    folder's lock, prints, and writes files, while the others wait for it."""
    if not distributed.is_main():
        console = Console(stderr=True, quiet=True)
    console = console or Console(stderr=True)
    plans = expand(spec)
    run_ids = [p.run_id for p in plans]
    with ExitStack() as held:
        def prepare() -> tuple[Path, pd.DataFrame]:
            spec_dir = run_folder(spec, plans, out_root)
            held.enter_context(FolderLock(spec_dir))
            started = [r for r in run_ids if (spec_dir / r).exists()]
            if started and not (resume or overwrite):
                raise UserError(f"{spec_dir} already holds {len(started)} of this spec's runs (e.g. {started[0]}); "
                                "pass --resume to continue them or --overwrite to start over")
            if overwrite:
                remove_runs(spec_dir, run_ids, tables=True)
            elif started:
                check_unchanged(spec_dir, spec.model_dump_json())
            if cleaned := clean_leftovers(spec_dir, run_ids):
                console.print(f"[dim]removed {cleaned} temporary file(s) left by an interrupted write")
            write_text(spec_dir / SPEC_JSON, spec.model_dump_json(indent=2))
            return spec_dir, write_results(spec_dir, run_ids)  # rows of runs that finished but missed the table

        spec_dir, table = distributed.on_main(prepare)
        splits = SplitCache(device, lambda line: console.print(f"[dim]{line}"))
        with make_progress(console) as progress:
            overall = progress.add_task(f"{spec.name}: runs", total=len(plans), ips=0.0, info="")
            images = seconds = 0.0
            for plan in plans:
                run_dir = spec_dir / plan.run_id
                done = distributed.on_main(functools.partial(read_result, run_dir))
                status = None if done is None else done.get("status", "ok")
                if status == "ok" or (status == "diverged" and not retry_diverged):
                    progress.console.print(f"[dim]{plan.run_id}: {'finished' if status == 'ok' else 'diverged'} "
                                           "earlier, skipped")
                else:
                    if status == "diverged":  # retried from scratch: its checkpoint leads to the same divergence
                        distributed.on_main(functools.partial(remove_runs, spec_dir, [plan.run_id], tables=False))
                    row = train_or_record_divergence(spec, plan, run_dir, splits, device, progress)
                    table = distributed.on_main(functools.partial(write_results, spec_dir, run_ids))
                    progress.console.print(outcome(row))
                    if row.get("status", "ok") == "ok":  # the grid's rate: training images/s over the runs trained
                        seconds += row["train_time_s"]
                        images += row["train_time_s"] * row["images_per_s"]
                        progress.update(overall, ips=images / seconds if seconds > 0 else 0.0)
                progress.advance(overall)
        if spec.probe is not None:  # the spec asks what the encoders learned: `cebench probe` on the finished runs
            from cebench.probe import probe_runs

            probe = spec.probe
            distributed.on_main(lambda: probe_runs(spec_dir, probe, device, console=console))
    return table


def run_folder(spec: Spec, plans: list[RunPlan], out_root: Path) -> Path:
    """The spec's folder under `out_root`, created, once its data is known to suffice (a missing or empty folder, or
    too few training images, fails before any work) and it is not a tune study's."""
    if spec.data.name == "folder" and spec.data.path is not None:
        counts = split_files(spec.data.path, spec.data.n_val, spec.data.n_test, spec.data.n_train)
        check_batches(plans, len(counts["train"]), f"data folder {spec.data.path}")
    if spec.data.name == "pack":  # a missing pack, or one made for another image size, fails before any work too
        for size in sorted({p.variant.image_size for p in plans}):
            check_batches(plans, len(pack_rows(spec.data, open_pack(spec.data, size), "train")), f"pack {spec.data.path}")
    spec_dir = spec_folder(out_root, spec.name)
    if (spec_dir / TUNE_SPEC).is_file():
        raise UserError(f"{spec_dir} holds the tune study {spec.name!r}; give the run spec another name")
    return spec_dir


def train_or_record_divergence(
    spec: Spec, plan: RunPlan, run_dir: Path, splits: SplitCache, device: torch.device, progress: Progress | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One run of the grid, continued from its checkpoint if it has one: its row (with `extra` columns), or a
    `diverged` row (written to result.json like any other) when it diverged."""
    data = splits.get(spec.data, plan.variant.image_size)
    try:
        return train_and_score(spec, plan, run_dir, data, device, resume=(run_dir / STATE).is_file(),
                               progress=progress, extra=extra)
    except Diverged as e:
        if progress is not None:
            for task in progress.tasks[1:]:  # the run's own bar stops where it diverged
                progress.update(task.id, visible=False)
        reason = str(e)

        def record() -> dict[str, Any]:
            row = make_row(spec=spec.name, run_id=plan.run_id, variant=plan.variant, data=spec.data, seed=plan.seed,
                           summary={}, n_test=len(data.test), device=device, status="diverged", reason=reason,
                           extra={**{f"axis_{k}": v for k, v in plan.axes.items()}, **(extra or {})})
            write_text(run_dir / RESULT, json.dumps(row, indent=2, default=str))
            with run_log(run_dir) as log:
                log(f"diverged: {reason}")
            return row

        return distributed.on_main(record)


def outcome(row: dict[str, Any]) -> str:
    if row["status"] != "ok":
        return (f"[yellow]{row['run_id']}: {row['status']}[/] ({row['reason']}); recorded, the grid goes on "
                "(--resume --retry-diverged trains it again)")
    return f"{row['run_id']}: hole PSNR {row['psnr_mean']:.2f} dB, L1 {row['l1_mean']:.2f}%, SSIM {row['ssim_mean']:.3f}"


@contextmanager
def run_log(run_dir: Path) -> Iterator[Callable[[str], None]]:
    """A function appending lines to the run's train.log, flushed at once so a crash loses nothing (a no-op on the
    ranks other than 0 of a run over several processes)."""
    if not distributed.is_main():
        yield lambda line: None
        return
    with open(run_dir / "train.log", "a") as log_file:
        def log(line: str) -> None:
            log_file.write(line + "\n")
            log_file.flush()

        yield log


def train_and_score(
    spec: Spec, plan: RunPlan, run_dir: Path, splits: Splits, device: torch.device, *, resume: bool,
    progress: Progress | None, on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One run: fit, score on the test split, write per-image scores, samples and the result row (with `extra`
    columns) into `run_dir`."""
    def start() -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_run_config(run_dir, plan.variant, spec.data, plan.seed)

    distributed.on_main(start)
    with run_log(run_dir) as log:
        log(f"run {plan.run_id} on {distributed.devices(device)}: {plan.variant.model_dump_json()}")
        result = fit(plan.variant, splits.train, splits.val, plan.seed, run_dir, resume=resume,
                     progress=progress, log=log, on_epoch=on_epoch)
        row = distributed.on_main(functools.partial(
            score_run, spec.name, plan.run_id, plan.variant, spec.data, plan.seed, result, splits.test, run_dir,
            device, extra={**{f"axis_{k}": v for k, v in plan.axes.items()}, **(extra or {})},
            references=splits.references))
        log(f"test: {json.dumps({k: row[k] for k in row if k.endswith('_mean')})}")
    return row


def score_run(
    spec_name: str, run_id: str, variant: Variant, data: DataConfig, seed: int, result: FitResult,
    test: torch.Tensor, run_dir: Path, device: torch.device, extra: dict[str, Any] | None = None,
    references: dict[tuple[str, ...], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Score a trained run on `test` and write its files; `references` caches the reference scores on these images
    (`reference_scores`)."""
    task = Task(variant)
    amp = device.type == "cuda"
    scores = evaluate(result.generator, task, test, amp=amp)
    if not all(bool(torch.isfinite(s).all()) for k, s in scores.items() if k.startswith(("psnr", "l1"))):
        raise Diverged("the trained model's test scores are not finite (NaN or infinite weights)")
    per_image = pd.DataFrame({k: v.cpu().numpy() for k, v in scores.items()})
    per_image.insert(0, "test_index", range(len(per_image)))
    with atomic_path(run_dir / "per_image.csv") as tmp:
        per_image.to_csv(tmp, index=False)
    with atomic_path(run_dir / "history.csv") as tmp:
        pd.DataFrame(result.history).to_csv(tmp, index=False)
    write_png(run_dir / "samples.png", sample_grid(result.generator, task, test, amp=amp))
    refs = reference_scores(task, seed, test, device, references)
    row = make_row(spec=spec_name, run_id=run_id, variant=variant, data=data, seed=seed, summary=summarize(scores),
                   n_test=len(test), device=device, train_time_s=result.train_time_s,
                   images_per_s=result.images_per_s, warmup_s=result.warmup_s, extra={**refs, **(extra or {})})
    write_text(run_dir / RESULT, json.dumps(row, indent=2, default=str))
    return row


# What scoring reads of a variant besides the model (`evaluate`, `FillOnly`, `cebench.classical`): runs that agree on
# these see the same inputs, holes and fill on the same test images, so their fill-only and classical scores are equal.
SCORING_FIELDS = ("image_size", "channels", "mask", "overlap", "fill", "pretext")


def reference_scores(task: Task, seed: int, test: torch.Tensor, device: torch.device,
                     cache: dict[tuple[str, ...], dict[str, float]] | None = None) -> dict[str, float]:
    """Hole metrics of references on the same test images and holes: the fill alone, this run's untrained generator,
    and the classical inpainting methods of `cebench.classical`. `cache` (one per test split) keeps them for the next
    run: the fill and classical ones by scoring fields, the untrained model's by its architecture and weights too."""
    cache = {} if cache is None else cache
    scoring = tuple(str(getattr(task.variant, f)) for f in SCORING_FIELDS)
    amp = device.type == "cuda"
    torch.manual_seed(seed)
    untrained = task.build_generator().to(device)
    out: dict[str, float] = {}
    for name, key, score in (
        ("fill", scoring, lambda: reference_means("fill", evaluate(FillOnly(task), task, test, amp=amp))),
        ("untrained", (*scoring, model_digest(untrained)),
         lambda: reference_means("untrained", evaluate(untrained, task, test, amp=amp))),
        ("classical", scoring, lambda: classical_references(task, test)),
    ):
        if (name, *key) not in cache:
            cache[(name, *key)] = score()
        out.update(cache[(name, *key)])
    return out


def model_digest(model: torch.nn.Module) -> str:
    """A model's architecture (its repr: layers and their settings) and weights, hashed: equal digests, equal outputs."""
    digest = hashlib.sha256(repr(model).encode())
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name} {flat.dtype} {tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
