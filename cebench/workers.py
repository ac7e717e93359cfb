"""The workers of `cebench run SPEC --devices LIST` (one process per device of this machine) and `--storage URL` (the
same command on several machines), around the shared grid of `cebench.grid`.

Both imply `--resume`: the study decides what is left to train, so rerunning the command (after a crash, or on one
more machine) continues the grid. The spec folder's lock is taken shared by every worker: they coexist, while a plain
`cebench run` of the same spec (exclusive) still refuses to start beside them, and they beside it.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from rich.console import Console
from rich.markup import escape

from cebench.config import Spec
from cebench.device import pick_device
from cebench.errors import UserError
from cebench.grid import (
    JOURNAL,
    POLL_S,
    RESULTS_LOCK,
    STUDY_PREFIX,
    GridStore,
    assemble_results,
    default_storage,
    open_grid_study,
    work,
)
from cebench.imageio import write_text
from cebench.results import RESULTS_CSV
from cebench.run import make_progress, run_folder
from cebench.spec import expand, load_spec
from cebench.spec_folder import SPEC_JSON, FolderLock, check_unchanged, remove_runs, spec_folder, write_results
from cebench.storage import FileLock, shown

WORKERS = "cebench run workers"  # the lock's note: who holds the spec folder


def parse_devices(text: str) -> list[torch.device]:
    """`cuda:0,cuda:1` (or `cpu,cpu`, one worker each): devices that exist here, else one line naming the bad one."""
    names = [n.strip() for n in text.split(",")]
    if not text.strip() or not all(names):
        raise UserError(f"--devices {text!r}: give a comma-separated list, e.g. cuda:0,cuda:1 or cpu,cpu")
    devices = []
    for name in names:
        if name == "auto":
            raise UserError("--devices: auto is not one device; name each one (cpu, cuda:N)")
        try:
            device = pick_device(name)
        except UserError as e:
            raise UserError(f"--devices: {str(e).removeprefix('--device ')}") from None
        if device.type == "cuda":
            count = torch.cuda.device_count()
            index = 0 if device.index is None else device.index
            if index >= count:
                raise UserError(f"--devices: {name}: this machine has {count} CUDA device(s); valid: "
                                + ", ".join(f"cuda:{i}" for i in range(count)))
            device = torch.device("cuda", index)
        devices.append(device)
    return devices


def run_on_devices(
    spec: Spec, devices: list[torch.device], *, out_root: Path, storage: str | None = None, overwrite: bool = False,
    retry_diverged: bool = False, console: Console | None = None,
) -> pd.DataFrame:
    """One worker process per device on this machine, sharing the grid through `storage` (default: a journal file in
    the spec folder). Returns the results table once every run is finished."""
    return _grid(spec, devices, out_root=out_root, storage=storage, overwrite=overwrite, retry_diverged=retry_diverged,
                 console=console or Console(stderr=True))


def run_shared(
    spec: Spec, storage_url: str, device: torch.device, *, out_root: Path, overwrite: bool = False,
    retry_diverged: bool = False, console: Console | None = None,
) -> pd.DataFrame:
    """One worker in this process, sharing the grid with every machine that runs the same command on `storage_url`
    (`overwrite` is refused: they may be training it)."""
    return _grid(spec, [device], out_root=out_root, storage=storage_url, overwrite=overwrite,
                 retry_diverged=retry_diverged, console=console or Console(stderr=True))


def _grid(
    spec: Spec, devices: list[torch.device], *, out_root: Path, storage: str | None, overwrite: bool,
    retry_diverged: bool, console: Console,
) -> pd.DataFrame:
    plans = expand(spec)
    spec_dir = run_folder(spec, plans, out_root)
    if overwrite:
        if storage is not None:
            raise UserError(f"--overwrite with --storage {shown(storage)}: other machines may share this grid; start "
                            "over under a new spec name (or delete the study with `optuna delete-study`)")
        with FolderLock(spec_dir):  # exclusive: no worker of this grid is running
            remove_runs(spec_dir, [p.run_id for p in plans], tables=True)
            (spec_dir / JOURNAL).unlink(missing_ok=True)
    url = storage or default_storage(spec_dir)
    with FolderLock(spec_dir, WORKERS, shared=True):
        check_unchanged(spec_dir, spec.model_dump_json())
        store = GridStore(spec, url)  # a study holding another grid fails here, before any worker starts
        write_text(spec_dir / SPEC_JSON, spec.model_dump_json(indent=2))
        if retry_diverged:
            store.retry_diverged()
        console.print(f"{store.name} in {shown(url)}: {len(plans)} runs, "
                      f"{len(devices)} worker{'s' * (len(devices) > 1)} here on {', '.join(map(str, devices))}")
        if len(devices) == 1:
            with make_progress(console) as progress:
                trained = work(store, spec_dir, devices[0], console=progress.console, progress=progress)
            console.print(f"this worker trained {trained} run{'s' * (trained != 1)}")
        else:
            _spawn(spec, url, spec_dir, devices, store, console)
        if spec.probe is not None:
            console.print(f"the spec's probe is not run by grid workers: `cebench probe {spec_dir}` once the grid is done")
        return assemble_results(store, spec_dir, console)


def _spawn(spec: Spec, url: str, spec_dir: Path, devices: list[torch.device], store: GridStore,
           console: Console) -> None:
    """A worker process per device (spawned: CUDA cannot be forked); one bar here for the whole grid."""
    context = multiprocessing.get_context("spawn")
    n_cpu = sum(d.type == "cpu" for d in devices)
    threads = max(1, torch.get_num_threads() // max(1, n_cpu))  # CPU workers share the cores instead of fighting
    procs = [context.Process(target=_worker_main, args=(spec.model_dump_json(), url, str(spec_dir), str(d), threads),
                             name=f"cebench worker {d}") for d in devices]
    for p in procs:
        p.start()
    try:
        with make_progress(console) as progress:
            bar = progress.add_task(f"{spec.name}: runs", total=len(store.plans), ips=0.0, info=f"{len(procs)} workers")
            while any(p.is_alive() for p in procs):  # is_alive also reaps a worker that died
                progress.update(bar, completed=store.progress()[0])
                time.sleep(POLL_S)
            progress.update(bar, completed=store.progress()[0])
    except BaseException:  # Ctrl-C here (the workers ignore SIGINT): one SIGTERM each, so each checkpoints and stops
        for p in procs:
            if p.is_alive():
                p.terminate()
        raise
    finally:
        for p in procs:
            p.join()
    failed = [f"{d} (exit code {p.exitcode})" for d, p in zip(devices, procs, strict=True) if p.exitcode != 0]
    if failed:
        raise UserError(f"worker(s) on {', '.join(failed)} stopped early (their lines above say why); finished runs "
                        "are kept and the same command continues the grid")


def _worker_main(spec_json: str, url: str, spec_dir: str, device: str, threads: int) -> None:
    """A spawned worker: the same loop as a single one, its lines prefixed with its device."""
    console, label = Console(stderr=True), escape(f"[{device}] ")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent passes it on once
    if device == "cpu":
        torch.set_num_threads(threads)
    try:
        with FolderLock(Path(spec_dir), WORKERS, shared=True):
            store = GridStore(Spec.model_validate_json(spec_json), url)
            trained = work(store, Path(spec_dir), torch.device(device), console=console, label=label)
        console.print(f"{label}this worker trained {trained} run{'s' * (trained != 1)}")
    except UserError as e:
        console.print(f"[bold red]error:[/] {label}{escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


# ----------------------------------------------------------------------------------------------------------------------
# `cebench results` and `cebench report --storage`: the one table, on any machine


def gather(spec: Spec, out_root: Path, storage: str | None, *, console: Console | None = None) -> pd.DataFrame:
    """Rebuild `out_root/<spec>/results.csv` from the spec's finished runs; with `storage`, first write there the runs
    other workers (other machines) finished."""
    console = console or Console(stderr=True)
    spec_dir = spec_folder(out_root, spec.name)
    with FolderLock(spec_dir, "cebench results", shared=True):
        if not (spec_dir / SPEC_JSON).is_file():  # a machine that trained none of them: `report` names the spec
            write_text(spec_dir / SPEC_JSON, spec.model_dump_json(indent=2))
        if storage is not None:
            return assemble_results(GridStore(spec, storage, create=False), spec_dir, console)
        with FileLock(spec_dir / RESULTS_LOCK):
            return write_results(spec_dir, [p.run_id for p in expand(spec)])


def gather_input(path: Path, storage: str, *, console: Console | None = None) -> Path:
    """A `report` input with `--storage`: a spec (YAML), gathered into runs/<spec>/, or a runs/<spec>/ folder (the spec
    is the one stored with its study); returns the folder to report on."""
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        spec = load_spec(path)
        out_root = Path("runs")
    else:
        folder = path.parent if path.name == RESULTS_CSV else path
        saved = open_grid_study(STUDY_PREFIX + folder.name, storage, create=False).user_attrs.get("grid")
        if not isinstance(saved, dict):
            raise UserError(f"study {STUDY_PREFIX + folder.name!r} in {shown(storage)} holds no grid; pass the spec (YAML)")
        spec, out_root = Spec.model_validate(saved), folder.parent
    gather(spec, out_root, storage, console=console)
    return out_root / spec.name
