"""nox sessions: `nox` runs the tests; lint, typing and smoke are named; bench is opt-in (slow)."""

from __future__ import annotations

from pathlib import Path

import nox

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
