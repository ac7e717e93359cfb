"""nox sessions: `nox` runs the tests; lint, typing and smoke are named; bench, gpu and mutation are opt-in (slow)."""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from pathlib import Path

import nox
from nox.command import CommandFailed

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (CPU, tiny models)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Lint with ruff."""
    session.install("ruff")
    session.run("ruff", "check", "cebench", "tests", "benchmarks", "noxfile.py")


@nox.session
def typing(session: nox.Session) -> None:
    """Type-check the package with mypy."""
    session.install("-e", ".[dev]")
    session.run("mypy", "cebench")


@nox.session
def smoke(session: nox.Session) -> None:
    """Run the quickstart spec end to end, then check its results table."""
    session.install("-e", ".")
    tmp = session.create_tmp()
    session.run("cebench", "run", "ablations/quickstart.yaml", "--out", f"{tmp}/runs", "--overwrite")
    session.run("python", "-m", "cebench.smoke", f"{tmp}/runs/quickstart/results.csv")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks (slow, opt-in); `nox -s bench -- --compare` fails on a >10% regression against the last saved run."""
    compare = "--compare" in session.posargs
    if compare and not list(Path(".benchmarks").glob("*/*.json")):  # saved runs are per machine, not in git
        session.error("--compare: no saved run in .benchmarks/ to compare against; run `nox -s bench` first")
    session.install("-e", ".[dev]")
    args = ["pytest", "benchmarks", "--benchmark-storage=.benchmarks", "--benchmark-autosave",
            "--benchmark-json=.benchmarks/latest.json", "--benchmark-columns=mean,stddev,rounds"]
    if compare:
        args += ["--benchmark-compare", "--benchmark-compare-fail=mean:10%"]
    session.run(*args, *[a for a in session.posargs if a != "--compare"])


@nox.session(default=False)
def gpu(session: nox.Session) -> None:
    """Every GPU figure of BENCHMARKS.md in one run (on a CUDA machine): the suite, `cebench bench`, one Markdown block."""
    session.install("-e", ".[dev]")
    session.run("python", "-m", "benchmarks.gpu", *session.posargs)


# Mutation testing: each module with the tests that cover it (mutmut runs, for each mutant, those of them that reach the
# mutated function). In train.py only the resume path is mutated: the lines that restore a checkpoint and account for
# the steps and time trained before and after it.
MUTATION: dict[str, list[str]] = {
    "cebench/metrics.py": ["tests/test_metrics.py"],
    "cebench/report/stats.py": ["tests/test_report_stats.py"],
    "cebench/checkpoint.py": ["tests/test_checkpoint.py", "tests/test_atomic.py", "tests/test_resume.py"],
    "cebench/imageio.py": ["tests/test_imageio.py", "tests/test_atomic.py"],
    "cebench/train.py": ["tests/test_resume.py", "tests/test_train.py::test_ctrl_c_mid_epoch_keeps_every_finished_step"],
}
RESUME_PATH = r"resume|load_state|state\[|start_epoch|start_step|first_step|train_time_s|images_seen|epoch_s|checkpoint\("
MUTANTS = Path("tests/mutants.toml")  # survivors known to be equivalent, and mutants that mutmut cannot make


@nox.session(default=False)
def mutation(session: nox.Session) -> None:
    """Mutation testing (slow, opt-in); `nox -s mutation -- cebench/metrics.py` runs one module."""
    modules = session.posargs or list(MUTATION)
    if unknown := [m for m in modules if m not in MUTATION]:
        session.error(f"not a mutation-tested module: {', '.join(unknown)}; valid: {', '.join(MUTATION)}")
    if session.venv_backend != "none":  # `nox --no-venv -s mutation` uses the current environment as it is
        session.install("-e", ".[dev,mutation]")
    recorded = tomllib.loads(MUTANTS.read_text())
    equivalent = [{k: e[k] for k in ("function", "before", "after")} for e in recorded.get("equivalent", [])]
    new: list[str] = []
    for module in modules:
        # One work folder per module: mutmut reads its settings from the pyproject.toml where it runs, and keeps its
        # results in mutants/ there, so a rerun retests only changed functions (and the last run's survivors).
        work = Path(".mutation") / module.removesuffix(".py").replace("/", ".")
        for part in ("cebench", "tests"):
            shutil.copytree(part, work / part, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        settings = {"source_paths": ["cebench"], "only_mutate": [module], "process_isolation": "forkserver",
                    "pytest_add_cli_args_test_selection": MUTATION[module],
                    "pytest_add_cli_args": ["-p", "no:cacheprovider", "-W", "ignore::UserWarning"]}
        if module == "cebench/train.py":
            settings["do_not_mutate_patterns"] = [f"^(?!.*({RESUME_PATH}))"]
        table = "\n".join(f"{key} = {json.dumps(value)}" for key, value in settings.items())
        (work / "pyproject.toml").write_text(Path("pyproject.toml").read_text() + f"\n[tool.mutmut]\n{table}\n")
        with session.chdir(work):
            before = _mutmut_status(session) if Path("mutants").is_dir() else {}
            if again := [name for name, s in before.items() if s == "survived"]:  # the tests may have changed since
                session.run("nice", "-n", "10", "mutmut", "run", "--max-children", "2", *again, external=True)
            session.run("nice", "-n", "10", "mutmut", "run", "--max-children", "2", external=True)
            status = _mutmut_status(session)
            survivors = {name: _mutation(name, str(session.run("mutmut", "show", name, silent=True)))
                         for name, s in status.items() if s == "survived"}
            fresh = [n for n, m in survivors.items() if {k: m[k] for k in m if k != "diff"} not in equivalent]
            for name in fresh:
                session.log(f"survived: {name}\n{survivors[name]['diff']}")
            by_hand = [m for m in recorded.get("by_hand", []) if m["file"] == module]
            fresh += [f"{m['function']}: {m['after']!r} (by hand)" for m in by_hand if not _killed_by_hand(session, m)]
        new += fresh
        # Timeouts are not counted as kills: on a loaded machine an equivalent mutant can run out of time too.
        killed = sum(s == "killed" for s in status.values())
        scored = sum(s in ("killed", "survived") for s in status.values())
        others = {s: list(status.values()).count(s) for s in set(status.values()) - {"killed", "survived"}}
        session.log(f"{module}: mutmut killed {killed} of {scored} mutants ({killed / max(scored, 1):.1%}); "
                    f"{len(survivors) - len([n for n in fresh if n in survivors])} survivors recorded as equivalent; "
                    f"{len(by_hand)} mutants by hand; not scored: {others or 'none'}")
    if new:
        session.error(f"{len(new)} mutants survived that {MUTANTS} does not list as equivalent: kill each with a test, "
                      "or record it there with the reason it is equivalent")


def _mutmut_status(session: nox.Session) -> dict[str, str]:
    """Mutant name -> mutmut's verdict (killed, survived, timeout, no tests, ...)."""
    output = str(session.run("mutmut", "results", "--all", "true", silent=True))
    return dict(re.findall(r"^\s*(\S+): (.+)$", output, re.MULTILINE))


def _mutation(name: str, diff: str) -> dict[str, str]:
    """A mutant as the mutants file records it: its function and the lines it changes, not line numbers or mutmut's
    numbering, so a record survives small code moves."""
    module, _, mangled = name.rpartition(".")
    function = mangled.removeprefix("x_").removeprefix("xǁ").split("__mutmut_")[0].replace("ǁ", ".")
    lines = [line for line in diff.splitlines() if line[:1] in "-+" and not line.startswith(("---", "+++"))]
    return {"function": f"{module}.{function}", "before": "\n".join(x[1:].strip() for x in lines if x[0] == "-"),
            "after": "\n".join(x[1:].strip() for x in lines if x[0] == "+"), "diff": diff}


def _killed_by_hand(session: nox.Session, mutant: dict[str, str]) -> bool:
    """Apply a recorded mutant (code mutmut does not mutate: decorated functions) to the work copy, run its tests."""
    path = Path(mutant["file"])
    original = path.read_text()
    if original.count(mutant["before"]) != 1:
        session.error(f"{MUTANTS}: {mutant['function']}: {mutant['before']!r} is not in {path} exactly once")
    path.write_text(original.replace(mutant["before"], mutant["after"]))
    try:
        session.run("nice", "-n", "10", "python", "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                    *mutant["tests"], external=True, silent=True)
    except CommandFailed:
        return True  # a test failed: killed
    finally:
        path.write_text(original)
    session.log(f"survived by hand: {mutant['function']}: {mutant['before']!r} -> {mutant['after']!r}")
    return False
