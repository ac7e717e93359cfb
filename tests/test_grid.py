"""A grid spread over several workers (`cebench run --devices/--storage`), on CPU: each run trained exactly once, a killed
worker's run completed by another (journal file, PostgreSQL), the table gathered on another machine, and one line for a
device that does not exist or a study holding another grid."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import torch
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from cebench.cli import app
from cebench.errors import UserError
from cebench.grid import STUDY_PREFIX, GridStore
from cebench.spec import load_spec
from cebench.spec_folder import FolderLock
from cebench.storage import open_storage
from cebench.workers import parse_devices
from tests.conftest import TINY
from tests.test_tune import postgres_url  # noqa: F401 (the fixture of a throwaway PostgreSQL server)

ROOT = Path(__file__).resolve().parent.parent
SPEC: dict[str, Any] = {
    "name": "grid",
    "preset": "landscape2023",
    "data": {"name": "landscapes", "n_train": 64, "n_val": 16, "n_test": 16, "seed": 3},
    "overrides": {**TINY, "epochs": 1, "overlap": 2},
    "axes": {"lambda_adv": [0.001, 0.01]},
    "seeds": [0, 1],
}
RUNS = [f"lambda_adv={a}-seed{s}" for a in (0.001, 0.01) for s in (0, 1)]


def write_spec(folder: Path, **changes: Any) -> Path:
    path = folder / f"{changes.get('name', SPEC['name'])}.yaml"
    path.write_text(yaml.safe_dump({**SPEC, **changes}, sort_keys=False))
    return path


def cebench(*args: str | Path, fault: tuple[str, ...] = ("none",)) -> subprocess.Popen[str]:
    """`cebench ARGS` in a process of its own (through tests/inject.py, with `fault` injected)."""
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "tests.inject", *fault, "--", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def starts(run_dir: Path) -> int:
    """How many times the run was started (or continued): one line each in its train.log."""
    return (run_dir / "train.log").read_text().count(f"run {run_dir.name} on ")


def study(name: str, url: str) -> optuna.Study:
    return optuna.load_study(study_name=STUDY_PREFIX + name, storage=open_storage(url))


def check_finished_once(spec_dir: Path, url: str) -> list[optuna.trial.FrozenTrial]:
    """Every run has its row, one COMPLETE trial holding the same row, and results.csv lists each once."""
    trials = study(spec_dir.name, url).trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["run"] for t in complete) == sorted(RUNS), [(t.number, t.state) for t in trials]
    for t in complete:
        on_disk = json.loads((spec_dir / t.user_attrs["run"] / "result.json").read_text())
        assert json.loads(t.user_attrs["row"])["psnr_mean"] == on_disk["psnr_mean"]
    table = pd.read_csv(spec_dir / "results.csv")
    assert sorted(table["run_id"]) == sorted(RUNS) and set(table["status"]) == {"ok"}
    return trials


def test_workers_on_two_devices_train_each_run_exactly_once(tmp_path: Path) -> None:
    spec, out = write_spec(tmp_path), tmp_path / "runs"
    worker = cebench("run", spec, "--out", out, "--devices", "cpu,cpu")
    log = worker.communicate(timeout=600)[0]
    assert worker.returncode == 0 and "Traceback" not in log, log
    spec_dir = out / "grid"
    url = f"journal:{spec_dir / 'grid.log'}"
    trials = check_finished_once(spec_dir, url)
    assert len(trials) == len(RUNS)  # nothing queued twice, nothing failed
    assert [starts(spec_dir / r) for r in RUNS] == [1, 1, 1, 1]
    assert sum(int(n) for n in re.findall(r"this worker trained (\d+) run", log)) == len(RUNS)
    assert "this worker trained" in log and log.count("this worker trained") == 2

    # The same command again trains nothing; a plain `cebench run` beside the grid still needs --resume.
    again = cebench("run", spec, "--out", out, "--devices", "cpu,cpu")
    log = again.communicate(timeout=300)[0]
    assert again.returncode == 0 and log.count("this worker trained 0 runs") == 2, log
    assert [starts(spec_dir / r) for r in RUNS] == [1, 1, 1, 1]
    code, out_text = invoke("run", spec, "--out", out, "--device", "cpu")
    assert code == 2 and "pass --resume" in out_text

    # Another machine (another --out) gathers the one table from the study, enough for `cebench report`.
    code, out_text = invoke("results", spec, "--storage", url, "--out", tmp_path / "elsewhere")
    assert code == 0 and "4 trained elsewhere" in out_text, out_text
    here, there = (pd.read_csv(d / "results.csv") for d in (spec_dir, tmp_path / "elsewhere" / "grid"))
    pd.testing.assert_frame_equal(here, there)
    for run in RUNS:
        assert (tmp_path / "elsewhere" / "grid" / run / "per_image.csv").read_text() == \
            (spec_dir / run / "per_image.csv").read_text()
    # A third machine reports straight from the study (the spec comes with it).
    code, out_text = invoke("report", "--storage", url, tmp_path / "third" / "grid", "--out", tmp_path / "report")
    assert code == 0 and "Traceback" not in out_text, out_text
    assert "lambda_adv" in (tmp_path / "report" / "report.md").read_text()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "third" / "grid" / "results.csv"), here)


@pytest.mark.parametrize("server", ["journal", "postgresql"])
def test_a_killed_worker_has_its_run_completed_by_the_other(tmp_path: Path, server: str,
                                                           request: pytest.FixtureRequest) -> None:
    name = f"grid-{uuid.uuid4().hex[:8]}"  # a fresh study even on a long-lived server
    url = request.getfixturevalue("postgres_url") if server == "postgresql" else f"journal:{tmp_path / 'grid.log'}"
    spec, out = write_spec(tmp_path, name=name), tmp_path / "runs"
    args = ("run", spec, "--out", out, "--storage", url, "--device", "cpu")
    doomed = cebench(*args, fault=("kill-after", "state.pt", "1"))  # SIGKILL once its first checkpoint is written
    other = cebench(*args)
    doomed_log = doomed.communicate(timeout=300)[0]  # reaped at once: a zombie would look alive
    assert doomed.returncode == -9, doomed_log
    log = other.communicate(timeout=600)[0]
    assert other.returncode == 0 and "its worker is gone (killed?); its run is queued again" in log, log

    spec_dir = out / name
    trials = check_finished_once(spec_dir, url)
    dead = [t for t in trials if t.state == TrialState.FAIL]
    assert len(dead) == 1 and dead[0].user_attrs["worker"].endswith(f":{doomed.pid}") and "row" not in dead[0].user_attrs
    killed_run = dead[0].user_attrs["run"]
    for t in trials:
        if t.state == TrialState.COMPLETE:  # the survivor finished every run, the killed one from its checkpoint
            assert t.user_attrs["worker"].endswith(f":{other.pid}")
    assert {r: starts(spec_dir / r) for r in RUNS} == {r: 2 if r == killed_run else 1 for r in RUNS}


def test_ctrl_c_stops_every_worker_and_the_same_command_continues(tmp_path: Path) -> None:
    spec, out = write_spec(tmp_path, overrides={**TINY, "epochs": 20, "overlap": 2}), tmp_path / "runs"
    args = ("run", spec, "--out", out, "--devices", "cpu,cpu")
    grid = cebench(*args)
    spec_dir = out / "grid"
    deadline = time.monotonic() + 300

    def mid_run(run_dir: Path) -> bool:  # its first epoch is logged, 19 are left: a worker is surely training it
        log = run_dir / "train.log"
        return log.is_file() and "epoch=1 " in log.read_text()

    while not any(mid_run(spec_dir / r) for r in RUNS):
        assert grid.poll() is None and time.monotonic() < deadline, grid.communicate()[0]
        time.sleep(0.1)
    grid.send_signal(signal.SIGINT)  # to the parent alone: it stops its workers itself
    log = grid.communicate(timeout=300)[0]
    assert grid.returncode == 130 and "interrupted" in log and "Traceback" not in log, log
    url = f"journal:{spec_dir / 'grid.log'}"
    assert [t for t in study("grid", url).trials if t.state == TrialState.FAIL]  # given back, or found dead later

    again = cebench(*args)
    log = again.communicate(timeout=600)[0]
    assert again.returncode == 0, log
    check_finished_once(spec_dir, url)
    assert all(1 <= starts(spec_dir / r) <= 2 for r in RUNS)


def test_a_study_holding_another_grid_is_refused(tmp_path: Path) -> None:
    url = f"journal:{tmp_path / 'shared.log'}"
    (tmp_path / "first").mkdir()
    GridStore(load_spec(write_spec(tmp_path / "first", name="shared-grid")), url)  # the first spec sets the grid
    other = write_spec(tmp_path, name="shared-grid", axes={"lambda_adv": [0.1]})
    code, out = invoke("run", other, "--out", tmp_path / "runs", "--storage", url, "--device", "cpu")
    assert code == 2 and out.count("error:") == 1 and "Traceback" not in out, out
    assert "study 'run:shared-grid'" in out and "holds another grid (axes.lambda_adv: [0.001, 0.01] -> [0.1])" in out
    assert not list((tmp_path / "runs" / "shared-grid").glob("lambda*")), "nothing trained"
    more = write_spec(tmp_path, name="shared-grid", seeds=[0, 1, 2], description="three seeds")
    GridStore(load_spec(more), url)  # more seeds, another description: the same grid, grown


@pytest.mark.parametrize(("devices", "needle"), [
    ("cuda:7", "--devices: cuda:7: CUDA is not available on this machine"),
    ("cpu,gpu0", "--devices: 'gpu0' is not a device"),
    ("cpu,,cpu", "give a comma-separated list"),
    ("auto", "--devices: auto is not one device"),
])
def test_a_device_that_does_not_exist_is_one_line(tmp_path: Path, devices: str, needle: str) -> None:
    if torch.cuda.is_available() and devices == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    code, out = invoke("run", write_spec(tmp_path), "--out", tmp_path / "runs", "--devices", devices)
    assert code == 2 and out.count("error:") == 1 and needle in out and "Traceback" not in out, out
    assert not (tmp_path / "runs" / "grid").exists()


@pytest.mark.parametrize(("args", "needle"), [
    (("--storage", "journal:{tmp}/g.log", "--overwrite"), "--overwrite with --storage journal:"),
    (("--devices", "cpu,cpu", "--device", "cpu"), "--device and --devices contradict each other"),
    (("--storage", "redis://host/0"), "--storage redis://host/0: unsupported; valid: sqlite:///PATH, journal:PATH"),
])
def test_contradictory_grid_options_are_one_line(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    code, out = invoke("run", write_spec(tmp_path), "--out", tmp_path / "runs",
                       *(a.format(tmp=tmp_path) for a in args))
    assert code == 2 and out.count("error:") == 1 and needle in out and "Traceback" not in out, out


def test_a_cuda_index_beyond_the_machine_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert parse_devices("cuda:0, cuda:1") == [torch.device("cuda", 0), torch.device("cuda", 1)]
    with pytest.raises(UserError, match=r"^--devices: cuda:2: this machine has 2 CUDA device\(s\); valid: cuda:0, cuda:1$"):
        parse_devices("cuda:0,cuda:2")


def test_grid_workers_share_the_spec_folder_and_exclude_a_plain_run(tmp_path: Path) -> None:
    with FolderLock(tmp_path, "cebench run workers", shared=True), FolderLock(tmp_path, "another", shared=True), \
            pytest.raises(UserError, match=r"in use by cebench run workers \(pid "):
        FolderLock(tmp_path).__enter__()
    with FolderLock(tmp_path), pytest.raises(UserError, match=r"in use by cebench run \(pid "):
        FolderLock(tmp_path, "cebench run workers", shared=True).__enter__()


# ----------------------------------------------------------------------------------------------------------------------
# The store's bookkeeping, without training


def store_of(tmp_path: Path, **changes: Any) -> GridStore:
    return GridStore(load_spec(write_spec(tmp_path, **changes)), f"journal:{tmp_path / 'store.log'}")


def test_a_run_queued_twice_is_trained_by_one_claim_only(tmp_path: Path) -> None:
    store = store_of(tmp_path, seeds=[0], axes={})
    assert store.reconcile() == [] and store.reconcile() == []  # queued once, however often workers look
    store.study.enqueue_trial({}, user_attrs={"run": "landscape2023-seed0"})  # as two machines racing could
    first = store.claim()
    assert first is not None and first.run_id == "landscape2023-seed0" and first.number == 0
    assert store.claim() is None  # the later copy is a duplicate: failed, not handed out
    states = [(t.number, t.state, t.user_attrs.get("duplicate")) for t in store.study.trials]
    assert states == [(0, TrialState.RUNNING, None), (1, TrialState.FAIL, True)]
    assert store.progress() == (0, 1)


def test_diverged_runs_are_finished_until_retried(tmp_path: Path) -> None:
    store = store_of(tmp_path, seeds=[0], axes={})
    store.reconcile()
    claim = store.claim()
    assert claim is not None and not claim.retry_diverged
    row = {"run_id": claim.run_id, "status": "diverged", "reason": "loss is nan"}
    assert store.finish(claim, row, tmp_path / "nowhere")
    store.reconcile()
    assert store.claim() is None and store.progress() == (1, 0)  # recorded as diverged, not trained again
    assert list(store.finished_runs()) == [claim.run_id]
    store.retry_diverged()
    store.reconcile()
    retry = store.claim()
    assert retry is not None and retry.run_id == claim.run_id and retry.retry_diverged
    assert store.progress() == (0, 1)
    assert not store.finish(claim, row, tmp_path)  # a finished trial cannot be told again
