"""Fault injection: bad specs, bad files, kills at every durable write, signals, two processes, a full disk, a diverging
run in a grid, an edited spec, a dead tune worker elsewhere. Every case checks the exit code, that the user sees one
line and no traceback, and that no finished result is lost."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
import yaml
from optuna.trial import TrialState
from PIL import Image
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import cebench.run
import cebench.tune.storage
from cebench.checkpoint import RESULT, STATE, WEIGHTS
from cebench.cli import app
from cebench.data.folder import load_folder
from cebench.imageio import read_image
from cebench.tune import load_tune_spec, open_study
from tests.conftest import TINY
from tests.test_tune import postgres_url  # noqa: F401 (the fixture of a throwaway PostgreSQL server)

ROOT = Path(__file__).resolve().parent.parent
SPEC: dict[str, Any] = {
    "name": "faults",
    "preset": "landscape2023",
    "data": {"name": "landscapes", "n_train": 64, "n_val": 16, "n_test": 16, "seed": 3},
    "overrides": {**TINY, "overlap": 2, "loss": "l2"},
    "seeds": [0, 1],
}
RUNS = ["landscape2023-seed0", "landscape2023-seed1"]
# Columns that hold numbers computed by training and scoring: equal to the last bit after any kill and resume.
TIMING = {"train_time_s", "images_per_s", "warmup_s", "finished_at"}


def write_spec(folder: Path, **changes: Any) -> Path:
    path = folder / f"{re.sub(r'[^A-Za-z0-9]', '_', changes.get('name', SPEC['name']))}.yaml"
    path.write_text(yaml.safe_dump({**SPEC, **changes}, sort_keys=False))
    return path


def invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def one_line(code: int, out: str, needle: str, *, alone: bool = True) -> None:
    """Exit code 2 and one error line holding `needle`, no traceback; `alone`: nothing else was printed either."""
    assert code == 2, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert "Traceback" not in out and len(errors) == 1 and needle in errors[0], out
    assert not alone or len(out.strip().splitlines()) == 1, out


def inject(*fault: str, args: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "tests.inject", *fault, "--", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def metrics(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=[c for c in table.columns if c in TIMING]).set_index("run_id").sort_index()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The spec's runs trained without faults, in a subprocess like the faulty runs (same threads, same environment)."""
    root = tmp_path_factory.mktemp("reference")
    done = inject("none", args=["run", write_spec(root), "--out", root / "runs", "--device", "cpu"], cwd=root)
    assert done.returncode == 0, done.stderr
    return root / "runs" / "faults"


def same_results(folder: Path, reference: Path) -> None:
    """Every run's row and weights equal the uninterrupted reference's, to the last bit (timings aside)."""
    table = pd.read_csv(folder / "results.csv")
    assert list(table["run_id"]) == RUNS
    pd.testing.assert_frame_equal(metrics(table), metrics(pd.read_csv(reference / "results.csv")))
    for run in RUNS:
        ours, theirs = load_file(str(folder / run / WEIGHTS)), load_file(str(reference / run / WEIGHTS))
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), run


# ----------------------------------------------------------------------------------------------------------------------
# Bad specs and names: one line, exit 2, nothing trained


@pytest.mark.parametrize(("changes", "needle"), [
    ({"name": ".."}, "name: String should match pattern"),
    ({"name": "."}, "name: String should match pattern"),
    ({"name": ".hidden"}, "name: String should match pattern"),
    ({"name": "a/b"}, "name: String should match pattern"),
    ({"overrides": {**SPEC["overrides"], "lr_g": float("inf")}}, "lr_g"),
    ({"overrides": {**SPEC["overrides"], "lambda_adv": float("nan")}}, "lambda_adv"),
    ({"overrides": {**SPEC["overrides"], "image_size": 16}}, "power of two >= 32"),
    ({"seeds": [0, 0]}, "seed 0 is listed twice"),
    ({"axes": {"loss": ["l2", "l2"]}}, "axis 'loss' lists 'l2' twice"),
    ({"overrides": {**SPEC["overrides"], "batch_size": 128}}, "batch_size 128 (run landscape2023-seed0) is larger"),
])
def test_bad_specs_stop_before_any_work(tmp_path: Path, changes: dict[str, Any], needle: str) -> None:
    code, out = invoke("run", write_spec(tmp_path, **changes), "--out", tmp_path / "runs", "--device", "cpu")
    one_line(code, out, needle)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("model.safetensors"))


def test_bad_command_lines_and_paths(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    one_line(*invoke("run", spec, "--resume", "--overwrite"), "contradict")
    (tmp_path / "afile").write_text("not a folder")
    one_line(*invoke("run", spec, "--out", tmp_path / "afile", "--device", "cpu"), "afile: is a file, not a folder")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "faults").write_text("in the way")
    one_line(*invoke("run", spec, "--out", tmp_path / "runs", "--device", "cpu"), "faults: is a file, not a folder")


def test_overwrite_deletes_only_the_specs_own_runs(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, seeds=[0])
    runs = tmp_path / "runs"
    assert invoke("run", spec, "--out", runs, "--device", "cpu")[0] == 0
    keep = [runs / "faults" / "notes.txt", runs / "faults" / "old-run" / "model.safetensors", runs / "other" / "x"]
    for path in keep:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("mine")
    code, out = invoke("run", spec, "--out", runs, "--device", "cpu", "--overwrite")
    assert code == 0, out
    assert all(p.read_text() == "mine" for p in keep)
    assert list(pd.read_csv(runs / "faults" / "results.csv")["run_id"]) == ["landscape2023-seed0"]


# ----------------------------------------------------------------------------------------------------------------------
# Kills at each durable write, then --resume: bit-identical results, no leftovers


@pytest.mark.parametrize(("fault", "name", "nth"), [
    ("kill-after", STATE, 1),  # run 1's last checkpoint is on disk, its scores are not
    ("kill-after", RESULT, 1),  # run 1's row is in result.json, not yet in the table
    ("kill-before", "results.csv", 1),  # the table write is torn: its temporary file stays behind
    ("kill-after", WEIGHTS, 2),  # in run 2, after its last checkpoint's weights, before anything else
])
def test_a_kill_at_any_durable_write_resumes_to_the_same_results(
    tmp_path: Path, reference: Path, fault: str, name: str, nth: int,
) -> None:
    args: list[str | Path] = ["run", write_spec(tmp_path), "--out", tmp_path / "runs", "--device", "cpu"]
    killed = inject(fault, name, str(nth), args=args, cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = inject("none", args=[*args, "--resume"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    same_results(tmp_path / "runs" / "faults", reference)
    assert not list((tmp_path / "runs").rglob("*.tmp-*")), "a torn write's temporary file was left behind"
    if fault == "kill-before":
        assert "removed 1 temporary file" in resumed.stderr


# ----------------------------------------------------------------------------------------------------------------------
# Ctrl-C and SIGTERM: the step under way finishes, a checkpoint is written, --resume continues to the same numbers


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_run_checkpoints_and_resumes_to_the_same_results(
    tmp_path: Path, reference: Path, monkeypatch: pytest.MonkeyPatch, signum: int,
) -> None:
    real_fit = cebench.run.fit

    def signalled_fit(*args: Any, **kwargs: Any) -> Any:
        def after_first_epoch(epoch: int, record: dict[str, float]) -> None:
            if epoch == 1:
                os.kill(os.getpid(), signum)  # a real signal, delivered to cebench's own handler

        return real_fit(*args, **{**kwargs, "on_epoch": after_first_epoch})

    monkeypatch.setattr(cebench.run, "fit", signalled_fit)
    args: list[str | Path] = ["run", write_spec(tmp_path), "--out", tmp_path / "runs", "--device", "cpu"]
    code, out = invoke(*args)
    assert code == 128 + signum and signal.Signals(signum).name in out and "Traceback" not in out, out
    assert (tmp_path / "runs" / "faults" / RUNS[0] / STATE).is_file()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    monkeypatch.setattr(cebench.run, "fit", real_fit)
    code, out = invoke(*args, "--resume")
    assert code == 0, out
    same_results(tmp_path / "runs" / "faults", reference)


# ----------------------------------------------------------------------------------------------------------------------
# Two processes on one spec


def test_a_second_process_is_refused_and_takes_over_from_a_dead_one(tmp_path: Path) -> None:
    args: list[str | Path] = ["run", write_spec(tmp_path), "--out", tmp_path / "runs", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen([sys.executable, "-m", "tests.inject", "hold", "120", "--", *map(str, args)], cwd=ROOT,
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = tmp_path / "runs" / "faults" / ".lock"
    deadline = time.monotonic() + 60
    while not (lock.is_file() and f"pid {first.pid}" in lock.read_text()):
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    try:
        for extra in ([], ["--resume"], ["--overwrite"]):
            one_line(*invoke(*args, *extra), f"is in use by cebench run (pid {first.pid} on {socket.gethostname()}")
        assert (tmp_path / "runs" / "faults" / "spec.json").is_file()  # --overwrite deleted nothing
    finally:
        first.kill()
        first.wait()
    code, out = invoke(*args, "--resume")  # the dead holder's lock is taken over
    assert code == 0, out
    assert list(pd.read_csv(tmp_path / "runs" / "faults" / "results.csv")["run_id"]) == RUNS


# ----------------------------------------------------------------------------------------------------------------------
# A full disk


def test_a_full_disk_is_one_line_and_keeps_finished_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_replace = os.replace

    def full_for_run_two(src: Any, dst: Any) -> None:
        if Path(dst).name == RESULT and Path(dst).parent.name == RUNS[1]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_for_run_two)
    args: list[str | Path] = ["run", write_spec(tmp_path), "--out", tmp_path / "runs", "--device", "cpu"]
    code, out = invoke(*args)
    one_line(code, out, f"{RUNS[1]}/{RESULT}: cannot write: disk full", alone=False)
    assert list(pd.read_csv(tmp_path / "runs" / "faults" / "results.csv")["run_id"]) == RUNS[:1]
    assert not list((tmp_path / "runs").rglob("*.tmp-*"))
    monkeypatch.setattr(os, "replace", real_replace)
    code, out = invoke(*args, "--resume")
    assert code == 0 and "finished earlier, skipped" in out, out
    assert list(pd.read_csv(tmp_path / "runs" / "faults" / "results.csv")["run_id"]) == RUNS


def test_a_real_full_file_system(tmp_path: Path) -> None:
    """The same on a 1 MB tmpfs, where torch.save and safetensors fail in their own ways, not with an OSError."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode().strip() or 'mount failed'})")
    try:
        spec = write_spec(tmp_path, seeds=[0], overrides={**SPEC["overrides"], "width": 16, "bottleneck_dim": 512})
        code, out = invoke("run", spec, "--out", mount, "--device", "cpu")
        one_line(code, out, "cannot write: disk full", alone=False)
        assert not list(mount.rglob("*.tmp-*"))
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# ----------------------------------------------------------------------------------------------------------------------
# A diverging run in the middle of a grid


def test_a_diverging_run_is_recorded_and_the_grid_goes_on(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, name="grid", seeds=[0], axes={"lr_g": [1e-3, 1e30, 2e-3]})
    args: list[str | Path] = ["run", spec, "--out", tmp_path / "runs", "--device", "cpu"]
    code, out = invoke(*args)
    assert code == 0 and "1 of 3 runs diverged" in out, out
    table = pd.read_csv(tmp_path / "runs" / "grid" / "results.csv")
    assert list(table["status"]) == ["ok", "diverged", "ok"]
    assert "not finite" in table["reason"].iloc[1] and np.isnan(table["psnr_mean"].iloc[1])
    assert table["psnr_mean"].iloc[[0, 2]].notna().all()
    code, out = invoke(*args, "--resume")
    assert code == 0 and "lr_g=1e+30-seed0: diverged earlier, skipped" in out, out
    code, out = invoke(*args, "--resume", "--retry-diverged")
    assert code == 0 and out.count("finished earlier, skipped") == 2, out
    log = (tmp_path / "runs" / "grid" / "lr_g=1e+30-seed0" / "train.log").read_text()
    assert log.count("diverged:") == 1  # retried from scratch: the earlier attempt's folder was replaced
    code, out = invoke("report", tmp_path / "runs" / "grid", "--out", tmp_path / "report")
    assert code == 0, out
    assert "1 run(s) diverged and are left out of every table" in (tmp_path / "report" / "report.md").read_text()


def test_nan_weights_are_refused_by_eval(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, seeds=[0])
    assert invoke("run", spec, "--out", tmp_path / "runs", "--device", "cpu")[0] == 0
    run = tmp_path / "runs" / "faults" / RUNS[0]
    tensors = load_file(str(run / WEIGHTS))
    first = next(k for k in tensors if k.startswith("G.") and tensors[k].is_floating_point())
    tensors[first] = torch.full_like(tensors[first], float("nan"))
    save_file(tensors, str(run / WEIGHTS))
    one_line(*invoke("eval", run, "--device", "cpu"), "hold NaN or infinite values")


# ----------------------------------------------------------------------------------------------------------------------
# Damaged files of a run


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"\x00garbage" * 10}[how])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trained")
    code, out = invoke("run", write_spec(root, seeds=[0]), "--out", root / "runs", "--device", "cpu")
    assert code == 0, out
    return root


@pytest.mark.parametrize(("file", "how", "command", "needle"), [
    (WEIGHTS, "truncated", "eval", "not a readable weights file"),
    (WEIGHTS, "empty", "eval", "not a readable weights file"),
    ("run.json", "garbage", "eval", "run.json: not a valid run record"),
    (STATE, "truncated", "resume", "checkpoint truncated or damaged; delete it"),
    (STATE, "empty", "resume", "checkpoint truncated or damaged; delete it"),
    (RESULT, "garbage", "resume", "result.json: not valid JSON"),
    ("spec.json", "garbage", "resume", "spec.json: not valid JSON"),
])
def test_damaged_run_files_are_one_line(trained: Path, tmp_path: Path, file: str, how: str, command: str,
                                        needle: str) -> None:
    runs = tmp_path / "runs"
    subprocess.run(["cp", "-a", str(trained / "runs"), str(runs)], check=True)
    run = runs / "faults" / RUNS[0]
    target = runs / "faults" / file if file == "spec.json" else run / file
    damage(target, how)
    if command == "resume" and file == STATE:
        (run / RESULT).unlink()  # unfinished, so --resume loads the checkpoint
    args = ["eval", run] if command == "eval" else ["run", write_spec(trained, seeds=[0]), "--out", runs, "--resume"]
    code, out = invoke(*args, "--device", "cpu")
    one_line(code, out, needle, alone=command == "eval")  # `run` has drawn its progress bar by then
    assert "weights_only" not in out


def test_wrong_shape_weights_are_one_line(trained: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, name="wide", seeds=[0], overrides={**SPEC["overrides"], "width": 16})
    assert invoke("run", spec, "--out", tmp_path / "runs", "--device", "cpu")[0] == 0
    run = trained / "runs" / "faults" / RUNS[0]
    other = tmp_path / "other"
    subprocess.run(["cp", "-a", str(run), str(other)], check=True)
    (other / WEIGHTS).write_bytes((tmp_path / "runs" / "wide" / RUNS[0] / WEIGHTS).read_bytes())
    one_line(*invoke("eval", other, "--device", "cpu"), "do not fit this run's model")


# ----------------------------------------------------------------------------------------------------------------------
# Bad image files


def png16(path: Path, gray8: np.ndarray) -> None:
    """A 16-bit grayscale PNG holding exactly the 8-bit image `gray8` (each level times 257)."""
    Image.fromarray(gray8.astype(np.uint16) * 257).save(path)


def test_16_bit_pngs_read_as_their_8_bit_twins(tmp_path: Path) -> None:
    gray = np.random.default_rng(0).integers(0, 256, (40, 30), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "eight.png")
    png16(tmp_path / "sixteen.png", gray)
    assert Image.open(tmp_path / "sixteen.png").mode.startswith("I")
    eight, sixteen = read_image(tmp_path / "eight.png"), read_image(tmp_path / "sixteen.png")
    assert eight is not None and sixteen is not None and torch.equal(eight, sixteen)


def test_score_of_a_16_bit_twin_is_perfect(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for side in ("pred", "target"):
        (tmp_path / side).mkdir()
    for i in range(2):
        gray = rng.integers(0, 256, (32, 32), dtype=np.uint8)
        Image.fromarray(gray).save(tmp_path / "target" / f"{i}.png")
        png16(tmp_path / "pred" / f"{i}.png", gray)
    code, out = invoke("score", "--pred", tmp_path / "pred", "--target", tmp_path / "target", "--out",
                       tmp_path / "s.csv", "--device", "cpu")
    assert code == 0, out
    scores = pd.read_csv(tmp_path / "s.csv")
    assert (scores["l1"] < 1e-9).all() and (scores["ssim"] > 1 - 1e-9).all()  # luma of gray RGB: equal to rounding


@pytest.mark.parametrize("side", [8, 16])
def test_score_on_images_too_small_for_ssim_is_one_line(tmp_path: Path, side: int) -> None:
    for folder in ("pred", "target"):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.zeros((side, side, 3), np.uint8)).save(tmp_path / folder / "a.png")
    code, out = invoke("score", "--pred", tmp_path / "pred", "--target", tmp_path / "target", "--device", "cpu")
    one_line(code, out, "SSIM needs")


def test_a_folder_of_odd_files_trains_on_what_is_readable(tmp_path: Path) -> None:
    """Corrupt, empty, 16-bit, 1x1 and extreme-aspect files: read, resized or skipped, never a crash or a blow-up."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / f"ok{i}.png")
    (folder / "empty.png").write_bytes(b"")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    gray = rng.integers(0, 256, (50, 50), dtype=np.uint8)
    png16(folder / "wide16.png", gray)
    Image.fromarray(gray).save(folder / "wide8.png")
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(folder / "dot.png")
    Image.fromarray(rng.integers(0, 256, (2, 20000, 3), dtype=np.uint8)).save(folder / "strip.png")
    Image.fromarray(rng.integers(0, 256, (20000, 2, 3), dtype=np.uint8)).save(folder / "pole.png")
    logged: list[str] = []
    images = load_folder(folder, "train", 32, 44, n_val=0, n_test=0, log=logged.append)
    assert images.shape == (11, 3, 44, 44)
    assert logged and "skipped 2 unreadable files" in logged[0]
    files = sorted(p.name for p in folder.iterdir() if p.name not in ("empty.png", "corrupt.jpg"))
    rows = {name: images[i] for i, name in enumerate(files)}
    assert torch.equal(rows["wide16.png"], rows["wide8.png"])  # 16-bit read as its 8-bit twin, not white
    assert bool((rows["dot.png"] == 200).all())


# ----------------------------------------------------------------------------------------------------------------------
# An edited spec on --resume, for `run` and for `tune`


def test_resume_refuses_a_changed_spec_and_accepts_a_grown_one(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert invoke("run", write_spec(tmp_path, seeds=[0], epochs=2), "--out", runs, "--device", "cpu")[0] == 0
    code, out = invoke("run", write_spec(tmp_path, seeds=[0], epochs=3), "--out", runs, "--device", "cpu", "--resume")
    one_line(code, out, "the spec changed since its runs were trained (epochs: 2 -> 3)")
    code, out = invoke("run", write_spec(tmp_path, seeds=[0, 1], epochs=2, description="more seeds"), "--out", runs,
                       "--device", "cpu", "--resume")
    assert code == 0 and "landscape2023-seed0: finished earlier, skipped" in out, out
    assert list(pd.read_csv(runs / "faults" / "results.csv")["run_id"]) == RUNS
    assert json.loads((runs / "faults" / "spec.json").read_text())["seeds"] == [0, 1]


TUNE: dict[str, Any] = {
    "name": "tune-faults", "preset": "landscape2023", "data": SPEC["data"], "overrides": {**TINY, "overlap": 2,
    "epochs": 1}, "trials": 1, "startup_trials": 1, "space": {"lr_g": {"low": 1e-4, "high": 1e-2, "log": True}},
}


def write_tune(folder: Path, **changes: Any) -> Path:
    path = folder / "tune.yaml"
    path.write_text(yaml.safe_dump({**TUNE, **changes}, sort_keys=False))
    return path


def test_tune_refuses_an_edited_search_but_not_a_bigger_budget(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert invoke("tune", write_tune(tmp_path), "--out", runs, "--device", "cpu")[0] == 0
    edited = write_tune(tmp_path, overrides={**TUNE["overrides"], "epochs": 3})
    one_line(*invoke("tune", edited, "--out", runs, "--device", "cpu"), "overrides.epochs: 1 -> 3")
    code, out = invoke("tune", write_tune(tmp_path, trials=2), "--out", runs, "--device", "cpu")
    assert code == 0 and "ran 1 trial" in out, out


def test_tune_multi_objective_refuses_a_pruner(tmp_path: Path) -> None:
    spec = write_tune(tmp_path, objective=["val_psnr", "train_time_s"], pruner="median")
    one_line(*invoke("tune", spec, "--out", tmp_path / "runs", "--device", "cpu"), "Optuna prunes single-objective")


def test_a_crashing_trial_is_recorded_and_the_study_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cebench.tune.study

    real_fit = cebench.tune.study.fit
    calls: list[int] = []

    def crash_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nlots of detail")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(cebench.tune.study, "fit", crash_once)
    code, out = invoke("tune", write_tune(tmp_path, trials=2), "--out", tmp_path / "runs", "--device", "cpu")
    assert code == 0 and "Traceback" not in out, out
    assert "trial 0: failed: RuntimeError: CUDA out of memory." in out
    url = f"sqlite:///{tmp_path / 'runs' / 'tune-faults' / 'study.db'}"
    trials = optuna.load_study(study_name="tune-faults", storage=url).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[0].user_attrs["fail_reason"] == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"


# ----------------------------------------------------------------------------------------------------------------------
# A worker that died on another machine, sharing the study's storage


def stale_trial_elsewhere(spec_path: Path, url: str, heartbeat: Callable[[optuna.Study, int], None]) -> None:
    """A RUNNING trial of a worker on another host (no PID to check), whose last sign of life is `heartbeat`."""
    study = open_study(load_tune_spec(spec_path), url)
    trial = study.ask()
    trial.set_user_attr("worker", "another-machine:4242")
    heartbeat(study, trial._trial_id)


def test_a_stale_trial_on_a_journal_file_is_failed_when_the_budget_looks_reached(tmp_path: Path) -> None:
    spec, url = write_tune(tmp_path), f"journal:{tmp_path / 'journal.log'}"

    def long_ago(study: optuna.Study, trial_id: int) -> None:
        study._storage.set_trial_user_attr(trial_id, "heartbeat", time.time() - 6 * cebench.tune.storage.HEARTBEAT_S)

    stale_trial_elsewhere(spec, url, long_ago)
    code, out = invoke("tune", spec, "--out", tmp_path / "runs", "--device", "cpu", "--storage", url)
    assert code == 0 and "trial 0: its worker is gone" in out and "ran 1 trial" in out, out
    study = optuna.load_study(study_name="tune-faults", storage=cebench.tune.storage.open_storage(url))
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]


def test_a_live_trial_elsewhere_still_counts(tmp_path: Path) -> None:
    spec, url = write_tune(tmp_path), f"journal:{tmp_path / 'journal.log'}"
    stale_trial_elsewhere(spec, url, lambda s, t: s._storage.set_trial_user_attr(t, "heartbeat", time.time()))
    code, out = invoke("tune", spec, "--out", tmp_path / "runs", "--device", "cpu", "--storage", url)
    assert code == 0 and "ran 0 trials" in out, out


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_stale_trial_on_postgresql_is_failed(tmp_path: Path, postgres_url: str,  # noqa: F811
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cebench.tune.storage, "HEARTBEAT_S", 1)  # grace period: 5 s
    spec = write_tune(tmp_path, name=f"stale-{os.getpid()}-{time.time_ns() % 10**6}")

    def beat_once(study: optuna.Study, trial_id: int) -> None:
        study._storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]

    stale_trial_elsewhere(spec, postgres_url, beat_once)
    time.sleep(6)
    code, out = invoke("tune", spec, "--out", tmp_path / "runs", "--device", "cpu", "--storage", postgres_url)
    assert code == 0 and "trial 0: its worker is gone" in out and "ran 1 trial" in out, out


# ----------------------------------------------------------------------------------------------------------------------
# Permissions


def test_outputs_get_the_umask_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        assert invoke("run", write_spec(tmp_path, seeds=[0]), "--out", tmp_path / "runs", "--device", "cpu")[0] == 0
    finally:
        os.umask(old)
    folder = tmp_path / "runs" / "faults"
    for path in (folder / "results.csv", folder / "spec.json", folder / RUNS[0] / WEIGHTS, folder / RUNS[0] / STATE):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path

