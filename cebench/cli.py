"""The `cebench` command line. User errors print one line and exit with code 2; nothing computed is lost."""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperOption

from cebench.errors import UserError, disk_error

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark and ablate Context Encoders (Pathak et al. 2016): run, eval, score, inpaint.")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: preview samples.")
app.add_typer(data_app, name="data")
console = Console(soft_wrap=True)  # a message is one line, paths whole, at any width; tables still fit the width
err_console = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])

DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when present), cpu, cuda, cuda:N")]
FormatOpt = Annotated[str | None, typer.Option("--format", help="table (a terminal), markdown (default when piped), csv "
                                              "or json", show_default=False)]


def _flag_type(self: TyperOption, ctx: Any) -> str | None:
    """Help shows a flag's names, not a `<bool>` type: `--resume` takes no value."""
    return None if self.is_flag else _option_type(self, ctx)


_option_type = TyperOption.display_type_rich
TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]


def _version(show: bool) -> None:
    if show:
        import torch

        from cebench import __version__

        built = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build"
        cuda = f"CUDA available, {torch.cuda.device_count()} GPU(s)" if torch.cuda.is_available() else "CUDA not available"
        console.print(f"cebench {__version__} (torch {torch.__version__}, {built}; {cuda})", highlight=False, soft_wrap=True)
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="cebench, torch and CUDA versions, then exit")] = False,
) -> None:
    """Benchmark and ablate Context Encoders (Pathak et al. 2016): run, eval, score, inpaint."""


def user_errors(fn: F) -> F:
    """Turn UserError (and a full disk, a permission denied) into one red line and exit code 2; Ctrl-C or SIGTERM into a
    short note (checkpoints are already on disk) and exit code 130 or 143."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None  # a note, not a silent death
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            _error_line(e)
        except OSError as e:
            found = disk_error(e)
            if found is None:
                raise
            _error_line(found)
        except KeyboardInterrupt as e:
            signum = getattr(e, "signum", signal.SIGINT)
            if _is_main():
                err_console.print(f"[yellow]interrupted[/] ({signal.Signals(signum).name}): finished runs and a checkpoint "
                                  "of the one under way are saved; continue with the same command (`run` needs "
                                  "--resume)")
            raise typer.Exit(128 + signum) from None
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)

    return wrapper  # type: ignore[return-value]


def _is_main() -> bool:
    """Under torchrun only rank 0 speaks; the other ranks stop with the same exit code, quietly."""
    from cebench.distributed import is_main

    return is_main()


def _error_line(error: Exception) -> None:
    if _is_main():
        err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)  # "[x]" is text
    raise typer.Exit(2) from None


def _terminate(signum: int, frame: object) -> None:
    from cebench.train import Interrupted

    raise Interrupted(signum)


LISTS: Final = ("variants", "components", "datasets", "metrics")


@app.command("list")
@user_errors
def list_cmd(
    what: Annotated[str | None, typer.Argument(help=f"one table: {', '.join(LISTS)} (default: all)")] = None,
    fmt: FormatOpt = None,
) -> None:
    """Variants, components, datasets and metrics, as tables."""
    from cebench.config import Variant
    from cebench.data.source import DATASETS
    from cebench.metrics import METRIC_DESCRIPTIONS
    from cebench.models import BOTTLENECKS
    from cebench.output import Listing, emit
    from cebench.registry import create_variant, list_variants, variant_doc

    if what is not None and what not in LISTS:
        raise UserError(f"cebench list {what!r}: valid: {', '.join(LISTS)}")
    variants = Listing("variants", ["name", "bottleneck", "channels", "loss", "critic", "lr G / D", "source"],
                       prose={"lr G / D", "source"})
    for name in list_variants():
        v = create_variant(name)
        variants.rows.append([name, v.bottleneck, v.channels, v.loss, v.discriminator if v.loss == "joint" else "-",
                              f"{v.lr_g:g} / {v.lr_d:g}", variant_doc(name).splitlines()[0]])
    choices = {"bottleneck": list(BOTTLENECKS)} | {
        f: list(Variant.model_fields[f].annotation.__args__)  # type: ignore[union-attr]
        for f in ("channels", "loss", "discriminator", "mask", "fill", "pretext")}
    components = Listing("components", ["field", "choices"], [[f, ", ".join(c)] for f, c in choices.items()],
                         prose={"choices"})
    datasets = Listing("datasets", ["name", "description"], [list(kv) for kv in DATASETS.items()], prose={"description"})
    metrics = Listing("metrics", ["name", "description"], [list(kv) for kv in METRIC_DESCRIPTIONS.items()],
                      prose={"description"}, caption="per image, averaged over the test set")
    tables = {"variants": variants, "components": components, "datasets": datasets, "metrics": metrics}
    emit([tables[what]] if what else list(tables.values()), fmt, console)


@app.command()
@user_errors
def run(
    spec: Annotated[Path, typer.Argument(help="ablation spec (YAML)")],
    out: Annotated[Path, typer.Option(help="root folder of run outputs")] = Path("runs"),
    device: DeviceOpt = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="continue interrupted runs, skip finished ones")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="delete this spec's earlier runs and start over")] = False,
    retry_diverged: Annotated[bool, typer.Option("--retry-diverged", help="with --resume: train diverged runs again")] = False,
    devices: Annotated[str | None, typer.Option(help="one worker per device, e.g. cuda:0,cuda:1 (implies --resume)")] = None,
    storage: Annotated[str | None, typer.Option(help="share the grid with every machine running this command: "
                                                "journal:F.log, postgresql://USER@HOST/DB (implies --resume)")] = None,
) -> None:
    """Train and score every run of an ablation spec; one row per run in runs/<spec>/results.csv."""
    from cebench.device import pick_device
    from cebench.run import run_spec
    from cebench.spec import load_spec

    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other; pass one")
    if devices is not None and device != "auto":
        raise UserError("--device and --devices contradict each other; pass one")
    loaded = load_spec(spec)
    from cebench import distributed

    if distributed.launched() > 1:  # torchrun: this process is one rank of each run, data-parallel
        if devices is not None or storage is not None:
            raise UserError(f"{'--devices' if devices is not None else '--storage'} with torchrun: torchrun already "
                            "spreads each run over its processes; drop the option, or run without torchrun")
        dev = distributed.pick_device(device)
        from cebench.spec import expand

        distributed.check_batches({p.run_id: p.variant.batch_size for p in expand(loaded)})
        with distributed.session(dev):
            table = run_spec(loaded, out, dev, resume=resume, overwrite=overwrite, retry_diverged=retry_diverged,
                             console=err_console)
        if not distributed.is_main():
            return
        where = f"{distributed.launched()} processes ({dev.type})"
    elif devices is not None:
        from cebench.workers import parse_devices, run_on_devices

        devs = parse_devices(devices)
        table = run_on_devices(loaded, devs, out_root=out, storage=storage, overwrite=overwrite,
                               retry_diverged=retry_diverged, console=err_console)
        where = ", ".join(map(str, devs))
    elif storage is not None:
        from cebench.workers import run_shared

        dev = pick_device(device)
        table = run_shared(loaded, storage, dev, out_root=out, overwrite=overwrite, retry_diverged=retry_diverged,
                           console=err_console)
        where = str(dev)
    else:
        dev = pick_device(device)
        table = run_spec(loaded, out, dev, resume=resume, overwrite=overwrite, retry_diverged=retry_diverged,
                         console=err_console)
        where = str(dev)
    _print_results(table, f"{loaded.name}: {len(table)} runs on {where} -> {out / loaded.name / 'results.csv'}")
    diverged = int((table["status"] != "ok").sum()) if "status" in table else 0
    if diverged:
        err_console.print(f"[yellow]{diverged} of {len(table)} runs diverged[/] (status and reason in results.csv); "
                          "`--resume --retry-diverged` trains them again")


def _print_results(table: Any, title: str, fmt: str | None = None, speed: str = "images_per_s") -> None:
    """Each run's metrics (mean ± std over its test images) and images/s (`speed`: training's, or scoring's for eval),
    then its hole PSNR next to its references on the same images and holes (fill, untrained, classical)."""
    from cebench.classical import CLASSICAL
    from cebench.output import Listing, emit, pick_format
    from cebench.results import CONVENTION

    if pick_format(fmt, console) in ("csv", "json"):  # every column of the rows, numbers as numbers
        emit([Listing(title, list(table.columns), table.astype(object).values.tolist())], fmt, console)
        return
    metrics = [(m, label, digits) for m, label, digits in _SUMMARY if f"{m}_mean" in table]
    rate = "eval img/s" if speed == "eval_images_per_s" else "train img/s"
    runs = Listing(title, ["run", *(label for _, label, _ in metrics), rate], caption=CONVENTION,
                   numeric={label for _, label, _ in metrics} | {rate})
    for _, row in table.iterrows():
        if row.get("status", "ok") != "ok":
            runs.rows.append([str(row["run_id"]), *[row["status"] for _ in metrics], ""])
        else:
            runs.rows.append([str(row["run_id"]), *(f"{row[f'{m}_mean']:.{d}f}±{row[f'{m}_std']:.{d}f}"
                                                    for m, _, d in metrics), f"{row[speed]:.0f}"])
    names = {"fill": "fill only", "untrained": "untrained", **{m: m for m in CLASSICAL}}
    found = {k: label for k, label in names.items() if f"{k}_psnr_mean" in table}
    scored = table[table["status"] == "ok"] if "status" in table else table  # diverged runs have no scores
    listings, notes = [runs], []
    if found:
        listings.append(Listing("hole PSNR (dB): each run and its references on the same images and holes",
                                ["run", "model", *found.values()], numeric={"model", *found.values()}))
        for _, row in scored.iterrows():
            listings[1].rows.append([str(row["run_id"]), f"{row['psnr_mean']:.2f}",
                                     *(f"{row[f'{k}_psnr_mean']:.2f}" for k in found)])
    classical = [f"{m}_psnr_mean" for m in CLASSICAL if f"{m}_psnr_mean" in scored]
    if classical:
        behind = scored[scored["psnr_mean"] <= scored[classical].max(axis=1)]
        notes.append(f"{len(behind)} of {len(scored)} runs do not beat the best classical method in hole PSNR"
                     + (f": {', '.join(map(str, behind['run_id']))}" if len(behind) else ""))
    emit(listings, fmt, console, notes)


_SUMMARY = (("l1", "L1 %", 2), ("psnr", "PSNR dB", 2), ("ssim", "SSIM", 3), ("sharpness", "sharp", 2))


@app.command()
@user_errors
def results(
    spec: Annotated[Path, typer.Argument(help="ablation spec (YAML)")],
    storage: Annotated[str | None, typer.Option(help="also gather the rows every worker stored there (any machine)")] = None,
    out: Annotated[Path, typer.Option(help="root folder of run outputs")] = Path("runs"),
    fmt: FormatOpt = None,
) -> None:
    """The one results table of a spec: runs/<spec>/results.csv rebuilt from its runs (with --storage, from every
    worker's rows), printed."""
    from cebench.spec import load_spec
    from cebench.workers import gather

    loaded = load_spec(spec)
    table = gather(loaded, out, storage, console=err_console)
    if table.empty:
        raise UserError(f"{out / loaded.name}: no finished runs yet (run `cebench run {spec}` first)")
    _print_results(table, f"{loaded.name}: {len(table)} runs -> {out / loaded.name / 'results.csv'}", fmt)


@app.command("eval")
@user_errors
def eval_cmd(
    run_dir: Annotated[Path, typer.Argument(help="a trained run folder, runs/<spec>/<run>")],
    data: Annotated[Path | None, typer.Option(help="folder of images to score on (default: the run's test split)")] = None,
    n_test: Annotated[int | None, typer.Option(help="score at most this many images")] = None,
    out: Annotated[Path | None, typer.Option(help="CSV to append the row to (default RUN_DIR/eval.csv)")] = None,
    device: DeviceOpt = "auto",
    fmt: FormatOpt = None,
) -> None:
    """Re-score a trained run on any data; writes the same row format as `run`, with its own scoring images/s."""
    import pandas as pd

    from cebench.device import pick_device
    from cebench.inpaint import eval_run

    row = eval_run(run_dir, pick_device(device), data_path=data, n_test=n_test, out=out)
    _print_results(pd.DataFrame([row]), f"{run_dir.name} on {data or 'its test split'} ({row['n_test']} images)", fmt,
                   speed="eval_images_per_s")


@app.command()
@user_errors
def score(
    pred: Annotated[Path, typer.Option(help="folder of inpainted images")],
    target: Annotated[Path, typer.Option(help="folder of original images, paired by file name")],
    out: Annotated[Path, typer.Option(help="per-image CSV")] = Path("scores.csv"),
    mask: Annotated[str, typer.Option(help="'center' or a mask image (white = scored region)")] = "center",
    region: Annotated[str, typer.Option(help="hole (the masked region) or image (whole image)")] = "hole",
    classical: Annotated[bool, typer.Option(help="also score classical inpainting of the targets, as references")] = True,
    perceptual: Annotated[bool, typer.Option("--perceptual", help="LPIPS, FID, KID where their weights are on disk")] = False,
    weights: Annotated[Path | None, typer.Option(help="folder with the weight files (default: torch's hub cache)")] = None,
    device: DeviceOpt = "auto",
    fmt: FormatOpt = None,
) -> None:
    """Score ANY inpainting method's outputs against the originals with cebench's metric harness."""
    from cebench.device import pick_device
    from cebench.score import print_summary, score_dirs

    if region not in ("hole", "image"):
        raise UserError(f"--region {region!r}: valid: hole, image")
    table = score_dirs(pred, target, mask=mask, region=region, out=out, device=str(pick_device(device)),
                       classical=classical, perceptual=perceptual, weights=weights)
    print_summary(table, console, fmt)
    err_console.print(f"per-image scores -> {out}")  # stderr: stdout stays one table in the format asked for


@app.command()
@user_errors
def inpaint(
    run_dir: Annotated[Path, typer.Argument(help="a trained run folder")],
    images: Annotated[list[Path], typer.Argument(help="photos to fill (any size; gray stays gray)")],
    out: Annotated[Path, typer.Option(help="output folder: NAME.png per photo, never over an input")] = Path("filled"),
    hole: Annotated[str | None, typer.Option(help="the hole as x,y,w,h in photo pixels (default: the centre region "
                                            "the model was trained on, scaled to the photo)", show_default=False)] = None,
    mask: Annotated[Path | None, typer.Option(help="a mask image of the photo's size, white = hole",
                                              show_default=False)] = None,
    side_by_side: Annotated[bool, typer.Option("--side-by-side", help="also write NAME.side-by-side.png: input with "
                                               "its hole | filled | original")] = False,
    device: DeviceOpt = "auto",
) -> None:
    """Fill a hole in your own photos: the model fills a square around it at its own resolution, and only the hole is
    blended back (feathered) into the photo at full resolution."""
    from cebench.device import pick_device
    from cebench.inpaint import inpaint_files

    for line in inpaint_files(run_dir, images, out, pick_device(device), hole=hole, mask=mask,
                              side_by_side=side_by_side):
        console.print(escape(line), highlight=False, soft_wrap=True)


@data_app.command("preview")
@user_errors
def data_preview(
    out: Annotated[Path, typer.Option(help="PNG to write")] = Path("landscapes.png"),
    n: Annotated[int, typer.Option(help="number of samples")] = 32,
    size: Annotated[int, typer.Option(help="image side")] = 128,
    seed: Annotated[int, typer.Option(help="scene seed")] = 0,
    folder: Annotated[Path | None, typer.Option(help="preview a folder dataset instead")] = None,
) -> None:
    """Write a PNG grid of dataset samples (the procedural landscapes by default)."""
    import torch

    from cebench.config import DataConfig
    from cebench.data.source import load_split
    from cebench.evaluate import tile
    from cebench.imageio import write_png

    data = DataConfig(name="folder", path=folder, n_val=0, n_test=n) if folder else DataConfig(seed=seed, n_test=n)
    images = load_split(data, "test", size, torch.device("cpu"))[:n]
    white = 255 if images.dtype == torch.uint8 else 1.0
    write_png(out, tile(images, columns=min(8, len(images)), padding=2, pad_value=white))
    console.print(f"wrote {len(images)} samples to {out}")


@data_app.command("pack")
@user_errors
def data_pack(
    folder: Annotated[Path, typer.Argument(help="image folder to pack")],
    size: Annotated[int, typer.Option(help="training image side the pack is for")] = 128,
    load_size: Annotated[int | None, typer.Option(help="short side before cropping (default size*350/128)")] = None,
    out: Annotated[Path | None, typer.Option(help="pack folder for `data: {name: pack, path: OUT}` (default: the "
                                             "cache the folder dataset reads)")] = None,
) -> None:
    """Decode a folder once into a memory-mapped pack, chunk by chunk (rerun after an interruption to resume);
    `run` and `eval` reuse it while the folder is unchanged, and a `pack` dataset streams it when it is large."""
    from cebench.data.folder import pack_or_load
    from cebench.data.source import default_load_size

    pack, path, fresh = pack_or_load(folder, size, load_size or default_load_size(size), out=out)
    state = "packed" if fresh else "up to date"
    console.print(f"{folder}: {len(pack.files)} images {state} in {path} ({len(pack.skipped)} unreadable skipped, "
                  f"{pack.array.nbytes / 2**30:.2f} GiB); train on it with data: {{name: pack, path: {path}}}")


@app.command()
@user_errors
def tune(
    spec: Annotated[Path, typer.Argument(help="tune spec (YAML)")],
    trials: Annotated[int | None, typer.Option(help="trials the study should hold in all (default: the spec's)")] = None,
    timeout: Annotated[str | None, typer.Option(help="stop starting trials after e.g. 90s, 30m, 2h")] = None,
    storage: Annotated[str | None, typer.Option(help="sqlite:///F.db, journal:F.log, postgresql://USER@HOST/DB")] = None,
    best: Annotated[bool, typer.Option("--best", help="print the best trial as a run spec (YAML)")] = False,
    trial: Annotated[int | None, typer.Option(help="with --best: this trial instead")] = None,
    out: Annotated[Path, typer.Option(help="root folder of run outputs")] = Path("runs"),
    device: DeviceOpt = "auto",
) -> None:
    """Optuna search over loss weights and learning rates; persistent, resumable, several workers."""
    from cebench.tune import tune_cli

    tune_cli(spec, trials=trials, timeout=timeout, storage=storage, best=best, trial=trial, out=out, device=device,
             console=err_console)


@app.command()
@user_errors
def probe(
    runs: Annotated[Path, typer.Argument(help="runs/<spec>/ (every trained run) or one run folder")],
    data: Annotated[str | None, typer.Option(help="landscapes[:SEED] or folder:PATH (class = first folder level)")] = None,
    tasks: Annotated[str | None, typer.Option(help="comma-separated (default landscapes: ridges,trees; folder: class)")] = None,
    layers: Annotated[str | None, typer.Option(help="linear-probe layers, e.g. conv4,conv5 (default: the last)")] = None,
    kinds: Annotated[str | None, typer.Option(help="linear, finetune or both (default)")] = None,
    n_train: Annotated[int | None, typer.Option(help="labelled training images (default 2000)")] = None,
    n_val: Annotated[int | None, typer.Option(help="validation images, for the linear probe's L2 (default 500)")] = None,
    n_test: Annotated[int | None, typer.Option(help="test images (default 1000)")] = None,
    epochs: Annotated[int | None, typer.Option(help="fine-tuning epochs (default 5)")] = None,
    device: DeviceOpt = "auto",
) -> None:
    """What the encoders learned: linear-probe and fine-tune accuracy on labelled images -> runs/<spec>/probe.csv."""
    from cebench.probe import probe_cli

    out = probe_cli(runs, data=data, tasks=tasks, layers=layers, kinds=kinds, n_train=n_train, n_val=n_val,
                    n_test=n_test, epochs=epochs, device=device, console=err_console)
    console.print(f"wrote {out}")


@app.command("report")
@user_errors
def report_cmd(
    inputs: Annotated[list[Path], typer.Argument(help="runs/<spec>/ folders (each with results.csv)")],
    out: Annotated[Path | None, typer.Option(help="report folder (default reports/<spec>, '+'-joined for several)")] = None,
    storage: Annotated[str | None, typer.Option(help="first gather the rows every worker stored there; inputs may then "
                                                "be specs (YAML), gathered into runs/<spec>/")] = None,
) -> None:
    """Tables against the published baselines and same-image references, ablation statistics, figures, galleries:
    Markdown, HTML, a LaTeX article; figures as PDF, PNG and CSV."""
    from cebench.report import report

    if storage is not None:
        from cebench.workers import gather_input

        inputs = [gather_input(path, storage, console=err_console) for path in inputs]
    folder = report(inputs, out, console=err_console)
    console.print(f"wrote {folder / 'report.md'}, {folder / 'report.html'} and {folder / 'report.tex'}")


@app.command()
@user_errors
def baselines(fmt: FormatOpt = None) -> None:
    """The published numbers, with source, dataset and metric convention."""
    from cebench.baselines import print_baselines

    print_baselines(console, fmt)


@app.command()
@user_errors
def bench(
    preset: Annotated[str, typer.Option(help="variant to time")] = "landscape2023",
    batch_size: Annotated[int | None, typer.Option(help="batch (default 512 on CUDA, 16 on CPU)")] = None,
    steps: Annotated[int | None, typer.Option(help="timed training steps (default 50 on CUDA, 4 on CPU)")] = None,
    fast: Annotated[bool | None, typer.Option("--fast/--plain", help="bf16 + channels_last + compile, or plain fp32 "
                                              "(default: fast on CUDA, plain on CPU)", show_default=False)] = None,
    device: DeviceOpt = "auto",
    fmt: FormatOpt = None,
) -> None:
    """Headline speed figures for this machine: training images/s, fraction of bf16 peak, paper-run time, scoring."""
    from cebench.bench import headline
    from cebench.device import pick_device
    from cebench.output import Listing, emit
    from cebench.registry import list_variants

    if preset not in list_variants():
        raise UserError(f"--preset {preset!r}: unknown; valid: {', '.join(list_variants())}")
    figures = headline(pick_device(device), preset, batch_size, steps, fast)
    frac = figures["fraction_of_bf16_peak"]
    rows = [  # the figure, its value and unit as data (CSV, JSON), and as read (table, Markdown)
        ("training images/s", figures["train_images_per_s"], "images/s", f"{figures['train_images_per_s']:,.0f}"),
        ("GFLOP per image (one joint step)", figures["gflop_per_image"], "GFLOP", f"{figures['gflop_per_image']:.2f}"),
        ("achieved TFLOP/s", figures["achieved_tflops"], "TFLOP/s", f"{figures['achieved_tflops']:.2f}"),
        ("fraction of bf16 peak", frac, "fraction", "n/a (no GPU)" if frac is None else f"{frac:.1%}"),
        ("warm-up (the first step: compilation, kernel choice)", figures["warmup_s"], "s",
         _duration(float(figures["warmup_s"] or 0))),
        ("100-epoch paper run (15K images), training + warm-up", figures["paper_run_s"], "s",
         _duration(float(figures["paper_run_s"] or 0))),
        ("scoring images/s (4 metrics + sharpness)", figures["score_images_per_s"], "images/s",
         f"{figures['score_images_per_s']:,.0f}"),
    ]
    table = Listing(f"cebench bench: {figures['device']}, {preset} at 128 px, batch {figures['batch']}, {figures['path']}",
                    ["figure", "value", "unit", "measured"], [list(r) for r in rows], numeric={"measured"},
                    prose={"figure"}, detail={"value", "unit"}, display={"measured"})
    emit([table], fmt, console)


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def main() -> None:
    app(prog_name="cebench")


if __name__ == "__main__":
    main()
