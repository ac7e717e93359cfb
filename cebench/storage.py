"""Optuna study storages shared by `cebench tune` and `cebench run --storage/--devices`: URLs (SQLite, journal file,
database server), worker ids, heartbeats, dead workers, locks and the trial budget's bookkeeping."""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import re
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from cebench.errors import UserError

HEARTBEAT_S = 60  # server databases only: a trial whose worker is silent for 5 heartbeats is failed by the others


def default_storage(study_dir: Path) -> str:
    return f"sqlite:///{(study_dir / 'study.db').resolve()}"


def shown(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    if "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def journal_path(url: str) -> Path | None:
    if url.startswith("journal:"):
        return Path(url.removeprefix("journal:"))
    return Path(url) if "://" not in url and url.endswith(".log") else None


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The Optuna storage behind a URL; an unreachable or malformed one is a one-line UserError."""
    journal = journal_path(url)
    scheme = url.split("://", 1)[0].split("+", 1)[0] if "://" in url else ""
    if journal is None and scheme not in ("sqlite", "postgresql", "mysql"):
        raise UserError(f"--storage {shown(url)}: unsupported; valid: sqlite:///PATH, journal:PATH (or PATH.log), "
                        "postgresql://USER@HOST/DB, mysql://USER@HOST/DB")
    try:
        if journal is not None:
            journal.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
        if scheme == "sqlite":
            return optuna.storages.RDBStorage(url)
        return _server_storage(_with_driver(url), {"connect_args": {"connect_timeout": 10}}
                               if scheme == "postgresql" else {})
    except ImportError:
        raise UserError(f"--storage {shown(url)}: no database driver for {scheme} is installed "
                        "(PostgreSQL: pip install 'cebench[postgres]', in a clone pip install -e '.[postgres]')") from None
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"--storage {shown(url)}: cannot open the study storage ({first})") from None


def _with_driver(url: str) -> str:
    """`postgresql://` with the driver that is installed (SQLAlchemy 2.1 means psycopg 3 by it, 2.0 psycopg2)."""
    if url.startswith("postgresql://"):
        for module in ("psycopg", "psycopg2"):
            if importlib.util.find_spec(module) is not None:
                return url.replace("postgresql://", f"postgresql+{module}://", 1)
    return url


def _server_storage(url: str, engine_kwargs: dict[str, Any]) -> optuna.storages.RDBStorage:
    """A database server shared by several machines: heartbeats let workers fail the trials of a dead one."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S,
                                                  grace_period=5 * HEARTBEAT_S)
        except (IntegrityError, ProgrammingError):  # several workers creating the tables at once
            if attempt == 2:
                raise
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def counted(trial: FrozenTrial) -> bool:
    """Whether a trial uses the budget: all but interrupted ones (failed without a `fail_reason`: Ctrl-C, a crash, a
    killed worker)."""
    return trial.state != TrialState.FAIL or "fail_reason" in trial.user_attrs


def reclaim_dead_workers(study: optuna.Study) -> list[int]:
    """Fail the running trials whose worker is gone, so that they neither hold the budget nor block a rerun: a process
    of this machine that no longer exists, or a worker elsewhere silent for five heartbeats (the database's own
    heartbeats on a server; on a journal file, the `heartbeat` attribute `Heartbeat` refreshes). Returns their numbers.
    Checked before every budget check, so a study that looks finished because of a dead worker's trial is not."""
    host, now = socket.gethostname(), time.time()
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    stale = []
    for t in running:
        owner_host, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        if owner_host == host and pid.isdigit():
            dead = int(pid) != os.getpid() and not _alive(int(pid))
        else:
            beat = t.user_attrs.get("heartbeat")
            dead = isinstance(study._storage, optuna.storages.JournalStorage) and isinstance(beat, float) and \
                now - beat > 5 * HEARTBEAT_S
        if dead:
            stale.append(t.number)
    reclaimed = []
    for number in stale:
        try:
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
            reclaimed.append(number)
        except (RuntimeError, ValueError):  # another worker got there first
            pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # server databases: trials silent past the grace period
    still = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    return reclaimed + sorted({t.number for t in running} - still - set(reclaimed))


class Heartbeat:
    """While a trial runs, a thread shows other workers that its worker is alive: on a database server with heartbeats
    (`open_storage` enables them) Optuna's own `record_heartbeat`, which `fail_stale_trials` reads; on other storages
    (a journal file several machines may share) the trial's `heartbeat` attribute, which `reclaim_dead_workers` reads.
    `Study.optimize` beats on servers by itself; `cebench run` workers claim trials without it, so they need this."""

    def __init__(self, study: optuna.Study, trial_id: int) -> None:
        self.storage, self.trial_id, self._stop = study._storage, trial_id, threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        storage = self.storage
        while True:
            with contextlib.suppress(Exception):  # a storage hiccup must not kill the trial; the next beat tries again
                if isinstance(storage, optuna.storages.RDBStorage) and storage.get_heartbeat_interval() is not None:
                    storage.record_heartbeat(self.trial_id)
                else:
                    storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())
            if self._stop.wait(HEARTBEAT_S):
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def worker_id() -> str:
    """This process, as recorded on its trials: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FileLock:
    """An exclusive lock between the processes on this machine (`fcntl.flock`; released when a process dies)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: Any = None

    def acquire(self) -> None:
        if self._handle is None:
            self._handle = open(self.path, "a")  # noqa: SIM115 (held across calls)
            fcntl.flock(self._handle, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
