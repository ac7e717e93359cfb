"""nox sessions: `nox` runs the tests; lint, typing and smoke are named; bench is opt-in (slow)."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite (CPU, tiny models)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Lint and check formatting with ruff."""
    session.install("ruff")
    session.run("ruff", "check", "cebench", "tests", "noxfile.py")


@nox.session(python=PYTHON)
def typing(session: nox.Session) -> None:
    """Type-check the package with mypy."""
    session.install("-e", ".[dev]")
    session.run("mypy", "cebench")


@nox.session(python=PYTHON)
def smoke(session: nox.Session) -> None:
    """Run the quickstart spec end to end, then check its results table."""
    session.install("-e", ".")
    tmp = session.create_tmp()
    session.run("cebench", "run", "ablations/quickstart.yaml", "--out", f"{tmp}/runs", "--overwrite")
    session.run("python", "-m", "cebench.smoke", f"{tmp}/runs/quickstart/results.csv")
