"""`cebench tune` on tiny specs: validation, a study that continues and is seeded, divergence, several objectives,
the --best round trip, two workers on one study (journal file, PostgreSQL) and a killed worker."""

from __future__ import annotations

import io
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState
from rich.console import Console

from cebench.errors import UserError
from cebench.run import run_spec
from cebench.spec import load_spec
from cebench.tune import load_tune_spec, open_study, parse_duration, tune_cli
from tests.conftest import TINY, TINY_DATA

ROOT = Path(__file__).resolve().parent.parent
BASE: dict[str, Any] = {
    "name": "tiny-tune",
    "preset": "landscape2023",
    "data": TINY_DATA.model_dump(mode="json"),
    "overrides": {**TINY, "overlap": 2},
    "trials": 3,
    "startup_trials": 2,
    "tie_lambdas": True,
    "space": {
        "lambda_adv": {"low": 1e-4, "high": 0.1, "log": True},
        "lr_g": {"low": 1e-4, "high": 1e-2, "log": True},
        "lr_d": {"low": 1e-5, "high": 1e-3, "log": True},
        "beta1": {"low": 0.3, "high": 0.9},
    },
}


def write_spec(tmp_path: Path, **changes: Any) -> Path:
    path = tmp_path / f"{changes.get('name', BASE['name'])}.yaml"
    path.write_text(yaml.safe_dump({**BASE, **changes}, sort_keys=False))
    return path


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def tune(spec: Path, out: Path, **kwargs: Any) -> str:
    console = quiet()
    tune_cli(spec, out=out, device="cpu", console=console, **kwargs)
    return console.file.getvalue()  # type: ignore[attr-defined]


def study_of(spec: Path, storage: str) -> optuna.Study:
    return open_study(load_tune_spec(spec), storage, create=False)


# ----------------------------------------------------------------------------------------------------------------------
# Bad input: one line naming the file and the field


@pytest.mark.parametrize(("changes", "needle"), [
    ({"space": {"lr": {"low": 1, "high": 2}}}, "space: unknown parameter 'lr'; valid (float variant fields): lambda_rec"),
    ({"space": {"lr_g": {"low": 1e-2, "high": 1e-3}}}, "space.lr_g.high: empty or inverted range: low 0.01 must be"),
    ({"space": {"lr_g": {"low": 1e-3, "high": 1e-3}}}, "space.lr_g.high: empty or inverted range"),
    ({"space": {"lr_g": {"low": 0, "high": 1, "log": True}}}, "space.lr_g.log: a log-scale range needs low > 0"),
    ({"space": {**BASE["space"], "beta1": {"low": 0.5, "high": 1.0}}}, "space.beta1.high: Input should be less than 1"),
    ({"space": {"lr_g": {"low": 1e-4, "high": 1e-2}}}, "tie_lambdas: needs lambda_adv in space"),
    ({"space": {}}, "space: Dictionary should have at least 1 item"),
    ({"space": {"lr_g": {"low": 1e-4, "high": 1e-2, "step": 2}}}, "space: lr_g: unknown field 'step'; valid: low, high, log"),
    ({"space": {**BASE["space"], "lambda_rec": {"low": 0.5, "high": 1}}}, "tie_lambdas: lambda_rec follows"),
    ({"space": {**BASE["space"], "lambda_adv": {"low": 0.1, "high": 2}}}, "tie_lambdas: space.lambda_adv.high 2"),
    ({"overrides": {"lr_g": 1e-3}}, "overrides.lr_g: also searched in space"),
    ({"overrides": {"lr": 1e-3}}, "overrides: unknown variant field 'lr'"),
    ({"objective": "psnr"}, "objective: unknown objective 'psnr'; valid: val_l1"),
    ({"objective": ["val_psnr", "val_psnr"]}, "objective: objectives must be distinct metrics"),
    ({"objective": []}, "objective: List should have at least 1 item"),
    ({"objective": ["val_psnr", "train_time_s"], "direction": "maximize"}, "direction: give one direction per"),
    ({"direction": "up"}, "direction.0: Input should be 'maximize' or 'minimize'"),
    ({"pruner": "asha"}, "pruner: Input should be 'median', 'hyperband' or 'none'"),
    ({"timeout": "2 weeks"}, "timeout: '2 weeks' is not a duration"),
    ({"data": {**TINY_DATA.model_dump(mode="json"), "n_val": 0}}, "data.n_val: the objective val_psnr needs"),
    ({"preset": "nope"}, "unknown preset 'nope'"),
    ({"trials": 0}, "trials: Input should be greater than 0"),
])
def test_bad_tune_specs_name_file_and_field(tmp_path: Path, changes: dict[str, Any], needle: str) -> None:
    path = write_spec(tmp_path, **changes)
    with pytest.raises(UserError) as err:
        load_tune_spec(path)
    assert str(path) in str(err.value) and needle in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"timeout": "2x"}, "--timeout '2x' is not a duration; expected e.g. 90s, 30m, 2h"),
    ({"trials": 0}, "--trials 0: must be at least 1"),
    ({"storage": "redis://localhost/0"}, "--storage redis://localhost/0: unsupported; valid: sqlite:///PATH"),
    ({"storage": "postgresql://nobody:secret@127.0.0.1:1/db"}, "--storage postgresql://nobody:***@127.0.0.1:1/db"),
    ({"storage": "sqlite:////nonexistent-dir/x/study.db"}, "cannot open the study storage"),
    ({"best": True}, "no study 'tiny-tune' in sqlite:///"),
])
def test_bad_command_line_values_are_one_line(tmp_path: Path, kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(UserError) as err:
        tune(write_spec(tmp_path), tmp_path / "runs", **kwargs)
    assert needle in str(err.value) and "\n" not in str(err.value) and "secret" not in str(err.value)


def test_durations() -> None:
    assert [parse_duration(v) for v in ("90", "90s", "30m", "2h", "1h30m", "1.5d", 45)] == \
        [90, 90, 1800, 7200, 5400, 129600, 45]
    for bad in ("", "h", "-5m", "0s", "5 parsecs"):
        with pytest.raises(ValueError, match=r"duration|positive"):
            parse_duration(bad)


def test_shipped_tune_spec_is_valid() -> None:
    spec = load_tune_spec(ROOT / "ablations" / "tune.yaml")
    assert spec.tie_lambdas and set(spec.space) == {"lambda_adv", "lr_g", "lr_d", "beta1"}
    assert spec.space["lambda_adv"].log and spec.space["lr_g"].log and spec.space["lr_d"].log
    assert spec.objectives == ["val_psnr"] and spec.directions == ["maximize"] and spec.pruner == "median"


# ----------------------------------------------------------------------------------------------------------------------
# One worker: continue, seeding, outputs, --best fed back into `cebench run`


def test_study_continues_is_seeded_and_best_runs_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path)
    tune(spec, tmp_path / "a", trials=2)
    out = tune(spec, tmp_path / "a")  # the same command again: continues up to the spec's 3 trials
    assert "ran 1 trial\n" in out
    assert "ran 0 trials" in tune(spec, tmp_path / "a")  # budget reached: nothing to do
    storage = f"sqlite:///{tmp_path / 'a' / 'tiny-tune' / 'study.db'}"
    study = study_of(spec, storage)
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED}

    tune(spec, tmp_path / "b")  # a fresh study in one go proposes the same trials
    again = study_of(spec, f"sqlite:///{tmp_path / 'b' / 'tiny-tune' / 'study.db'}")
    assert [t.params for t in again.trials] == [t.params for t in study.trials]
    assert len({t.params["lr_g"] for t in study.trials}) == 3
    for t in study.trials:  # tied lambdas
        assert t.user_attrs["overrides"]["lambda_rec"] == pytest.approx(1 - t.params["lambda_adv"])

    study_dir = tmp_path / "a" / "tiny-tune"
    results = pd.read_csv(study_dir / "results.csv")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert sorted(results["run_id"]) == [f"trial{t.number}" for t in complete]
    assert set(results["spec"]) == {"tiny-tune"} and {"psnr_mean", "val_psnr", "lambda_adv", "git_commit"} <= \
        set(results.columns)
    assert len(pd.read_csv(study_dir / "trials.csv")) == 3
    assert {"history.png", "importances.png", "contour.png", "intermediate.png"} <= \
        {p.name for p in (study_dir / "plots").iterdir()}

    capsys.readouterr()
    tune_cli(spec, out=tmp_path / "a", best=True)
    best_yaml = capsys.readouterr().out
    (tmp_path / "best.yaml").write_text(best_yaml)
    run = load_spec(tmp_path / "best.yaml")  # `cebench run` accepts it unchanged
    best = study.best_trial
    assert run.name == "tiny-tune-best" and run.overrides["lr_g"] == best.params["lr_g"]
    assert run.overrides["lambda_rec"] == pytest.approx(1 - best.params["lambda_adv"])
    table = run_spec(run, tmp_path / "runs", pytest.importorskip("torch").device("cpu"), console=quiet())
    trained = results.set_index("run_id").loc[f"trial{best.number}"]
    assert table["psnr_mean"].iloc[0] == pytest.approx(trained["psnr_mean"], abs=1e-9)  # the same model again


def test_diverging_trials_fail_with_the_reason_and_the_study_goes_on(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, name="diverge", preset="pathak2016_l2", tie_lambdas=False, trials=2,
                      space={"lr_g": {"low": 1e30, "high": 1e32, "log": True}})
    out = tune(spec, tmp_path / "runs")
    trials = study_of(spec, f"sqlite:///{tmp_path / 'runs' / 'diverge' / 'study.db'}").trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]  # the first failure did not stop it
    assert all("not finite" in t.user_attrs["fail_reason"] for t in trials)
    assert "trial 1: failed: loss is not finite" in out and "0 done, 0 pruned, 2 failed" in out
    assert not (tmp_path / "runs" / "diverge" / "results.csv").exists()
    out = tune(spec, tmp_path / "runs", trials=5, timeout="0.001s")
    assert "timeout reached; run again to continue up to 5 trials" in out and "ran 0 trials" in out


def test_pruned_trials_stop_early_and_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cebench.tune.study.make_pruner", lambda spec: optuna.pruners.ThresholdPruner(lower=1e9))
    spec = write_spec(tmp_path, name="pruned", trials=2, overrides={**TINY, "overlap": 2, "epochs": 3})
    out = tune(spec, tmp_path / "runs")
    trials = study_of(spec, f"sqlite:///{tmp_path / 'runs' / 'pruned' / 'study.db'}").trials
    assert [(t.state, t.user_attrs["pruned_at_epoch"], list(t.intermediate_values)) for t in trials] == \
        [(TrialState.PRUNED, 1, [1])] * 2
    assert "trial 1: pruned after epoch 1" in out and "0 done, 2 pruned" in out
    assert (tmp_path / "runs" / "pruned" / "plots" / "intermediate.png").is_file()
    assert not (tmp_path / "runs" / "pruned" / "results.csv").exists()


def test_two_objectives_report_the_pareto_front(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, name="pareto", trials=2, objective=["val_psnr", "train_time_s"],
                      overrides={**TINY, "overlap": 2, "epochs": 1})
    out = tune(spec, tmp_path / "runs")
    study_dir = tmp_path / "runs" / "pareto"
    front = pd.read_csv(study_dir / "pareto.csv")
    assert len(front) >= 1 and {"trial", "val_psnr", "train_time_s"} <= set(front.columns)
    assert "Pareto front" in out and (study_dir / "plots" / "pareto.png").is_file()
    capsys.readouterr()
    tune_cli(spec, out=tmp_path / "runs", trial=int(front["trial"].iloc[0]))
    assert load_spec(_write(tmp_path / "best.yaml", capsys.readouterr().out)).name == "pareto-best"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------------------------------------------------
# Several workers, a killed worker


def start_worker(spec: Path, out: Path, **kwargs: Any) -> subprocess.Popen[str]:
    code = ("import torch; torch.set_num_threads(1); from pathlib import Path; from cebench.tune import tune_cli; "
            f"tune_cli(Path({str(spec)!r}), out=Path({str(out)!r}), device='cpu', **{kwargs!r})")
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=ROOT)


def run_two_workers(spec: Path, out: Path, storage: str, budget: int) -> optuna.Study:
    """Two worker processes on one study: the budget is met exactly, every trial number ran once, in one worker."""
    workers = [start_worker(spec, out, storage=storage, trials=budget) for _ in range(2)]
    outputs = [w.communicate(timeout=240)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    ran = [int(re.search(r"ran (\d+) trial", o).group(1)) for o in outputs]  # type: ignore[union-attr]
    study = study_of(spec, storage)
    numbers = [t.number for t in study.trials]
    assert sum(ran) == len(numbers) == budget and sorted(numbers) == list(range(budget)), (ran, numbers)
    assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert len({t.user_attrs["worker"] for t in study.trials}) == sum(r > 0 for r in ran)
    study_dir = out / spec.stem
    for n in numbers:  # each trial trained exactly once
        assert (study_dir / f"trial{n}" / "train.log").read_text().count(f"trial {n} of study") == 1
    complete = sum(t.state == TrialState.COMPLETE for t in study.trials)
    assert len(pd.read_csv(study_dir / "results.csv")) == complete
    return study


def test_two_workers_on_one_machine_share_a_journal_study(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, name="journal", overrides={**TINY, "overlap": 2, "epochs": 1})
    run_two_workers(spec, tmp_path / "runs", f"journal:{tmp_path / 'runs' / 'journal' / 'journal.log'}", budget=6)


def test_a_killed_worker_loses_only_the_trial_in_flight(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, name="killed", overrides={**TINY, "overlap": 2, "epochs": 3})
    out = tmp_path / "runs"
    worker = start_worker(spec, out)
    deadline = time.monotonic() + 120
    while not (out / "killed" / "trial1" / "train.log").is_file():  # trial 0 done, trial 1 training
        assert worker.poll() is None and time.monotonic() < deadline, worker.communicate()[0]
        time.sleep(0.02)
    worker.kill()
    worker.wait()
    log = tune(spec, out)  # the same command again
    assert "trial 1: its worker is gone (killed?); marked failed, not counted" in log
    trials = study_of(spec, f"sqlite:///{out / 'killed' / 'study.db'}").trials
    assert [(t.number, t.state) for t in trials if t.state == TrialState.FAIL] == [(1, TrialState.FAIL)]
    assert [t.number for t in trials if t.state != TrialState.FAIL] == [0, 2, 3]  # the budget of 3 is met
    assert "3 done, 0 pruned, 0 failed, 0 running, 1 interrupted" in log


# ----------------------------------------------------------------------------------------------------------------------
# PostgreSQL on loopback: a throwaway cluster (or CEBENCH_TEST_POSTGRES_URL)


def _postgres_bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3].split(".")[0]))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@pytest.fixture
def postgres_url() -> Iterator[str]:
    if os.environ.get("CEBENCH_TEST_POSTGRES_URL"):
        yield os.environ["CEBENCH_TEST_POSTGRES_URL"]
        return
    pytest.importorskip("psycopg2", reason="the PostgreSQL storage needs psycopg2 (pip install psycopg2-binary)")
    bindir = _postgres_bindir()
    if bindir is None or not (bindir / "pg_ctl").is_file():
        pytest.skip("no PostgreSQL server binaries (install Debian's postgresql)")
    root = Path(tempfile.mkdtemp(prefix="cebench-pg-"))  # outside pytest's private tmp: the server's user reaches it
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        if not shutil.which("runuser"):
            pytest.skip("running as root and there is no runuser to start the server as 'postgres'")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]

    def pg(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*as_user, str(bindir / args[0]), *args[1:]], capture_output=True, text=True,
                              cwd=root, timeout=120)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    try:
        done = pg("initdb", "-D", str(data), "-A", "trust", "-U", "cebench", "--no-sync")
        if done.returncode == 0:
            done = pg("pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60", "-o",
                      f"-p {port} -h 127.0.0.1 -k {root} -c fsync=off", "start")
        if done.returncode != 0:
            pytest.skip(f"could not start a PostgreSQL server: {(done.stderr or done.stdout).strip()[-300:]}")
        yield f"postgresql://cebench@127.0.0.1:{port}/postgres"  # the driver installed is found
    finally:
        if (data / "postmaster.pid").exists():
            pg("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_two_processes_share_a_postgresql_study(tmp_path: Path, postgres_url: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    name = f"pg-{uuid.uuid4().hex[:8]}"  # a fresh study even on a long-lived server
    spec = write_spec(tmp_path, name=name, overrides={**TINY, "overlap": 2, "epochs": 1})
    study = run_two_workers(spec, tmp_path / "runs", postgres_url, budget=4)
    assert study.trials[0].user_attrs["worker"]
    capsys.readouterr()
    tune_cli(spec, out=tmp_path / "runs", storage=postgres_url, best=True)
    assert load_spec(_write(tmp_path / "best.yaml", capsys.readouterr().out)).name == f"{name}-best"
