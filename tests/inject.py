"""Run the `cebench` command line with one fault injected, for the fault-injection tests (tests/test_faults.py).

    python -m tests.inject kill-before NAME N -- run SPEC ...   # SIGKILL just before the N-th write of NAME lands
    python -m tests.inject kill-after NAME N -- run SPEC ...    # SIGKILL just after it landed
    python -m tests.inject hold SECONDS -- run SPEC ...         # sleep before each run trains (holding the lock)
    python -m tests.inject none -- run SPEC ...                 # no fault: the reference, in the same environment

Every durable write of cebench ends in the `os.replace` of `atomic_path`, so a kill there is a kill between two
durable writes, the worst moment a power cut or the OOM killer can choose.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any


def kill_at_write(name: str, nth: int, before: bool) -> None:
    real_replace = os.replace
    seen = 0

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        nonlocal seen
        hit = Path(dst).name == name and (seen := seen + 1) == nth
        if hit and before:
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst, *args, **kwargs)
        if hit:
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace  # type: ignore[assignment]


def hold(seconds: float) -> None:
    import cebench.run

    train = cebench.run.train_or_record_divergence

    def slowly(*args: Any, **kwargs: Any) -> Any:
        time.sleep(seconds)
        return train(*args, **kwargs)

    cebench.run.train_or_record_divergence = slowly  # type: ignore[assignment]


def main(argv: list[str]) -> None:
    split = argv.index("--")
    fault, params, args = argv[0], argv[1:split], argv[split + 1 :]
    if fault in ("kill-before", "kill-after"):
        kill_at_write(params[0], int(params[1]), before=fault == "kill-before")
    elif fault == "hold":
        hold(float(params[0]))
    elif fault != "none":
        raise SystemExit(f"unknown fault {fault!r}; valid: kill-before, kill-after, hold, none")
    from cebench.cli import app

    app(args, prog_name="cebench")


if __name__ == "__main__":
    main(sys.argv[1:])
