"""Run the `cebench` command line with one fault injected, for the fault-injection tests (tests/test_faults.py).

    python -m tests.inject kill-before NAME N -- run SPEC ...   # SIGKILL just before the N-th write of NAME lands
    python -m tests.inject kill-after NAME N -- run SPEC ...    # SIGKILL just after it landed
    python -m tests.inject hold SECONDS -- run SPEC ...         # sleep before each run trains (holding the lock)
    python -m tests.inject none -- run SPEC ...                 # no fault: the reference, in the same environment
    python -m tests.inject checkpoint-every-epoch -- run SPEC ...   # a checkpoint after every epoch
    python -m tests.inject no-batch-stats -- run SPEC ...       # BatchNorm with fixed statistics (tests/test_ddp.py)

Several faults may be given one after the other (`checkpoint-every-epoch kill-after state.pt 1`). A fault is a
process-wide patch, so under torchrun (`python -m torch.distributed.run ... -m tests.inject ...`) it is
injected into every rank.

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


def checkpoint_every_epoch() -> None:
    import cebench.run

    fit = cebench.run.fit

    def every_epoch(*args: Any, **kwargs: Any) -> Any:
        return fit(*args, **{**kwargs, "checkpoint_every_s": 0})

    cebench.run.fit = every_epoch  # type: ignore[assignment]


def no_batch_stats() -> None:
    """BatchNorm normalising with its initial running statistics (mean 0, variance 1) in training too: the layer is
    then an affine map per channel that looks at no other image of the batch, so splitting a batch over processes
    changes no number but the order of float sums."""
    import torch.nn.functional as F
    from torch import nn

    class FixedStats(nn.BatchNorm2d):
        def forward(self, x: Any) -> Any:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)

    nn.BatchNorm2d = FixedStats  # type: ignore[misc]


FAULTS = {"kill-before": 2, "kill-after": 2, "hold": 1, "checkpoint-every-epoch": 0, "no-batch-stats": 0, "none": 0}


def main(argv: list[str]) -> None:
    split = argv.index("--")
    faults, args = argv[:split], argv[split + 1 :]
    while faults:  # one fault or several, each followed by its parameters
        fault = faults[0]
        if fault not in FAULTS:
            raise SystemExit(f"unknown fault {fault!r}; valid: {', '.join(FAULTS)}")
        params, faults = faults[1 : 1 + FAULTS[fault]], faults[1 + FAULTS[fault] :]
        if fault in ("kill-before", "kill-after"):
            kill_at_write(params[0], int(params[1]), before=fault == "kill-before")
        elif fault == "hold":
            hold(float(params[0]))
        elif fault == "checkpoint-every-epoch":
            checkpoint_every_epoch()
        elif fault == "no-batch-stats":
            no_batch_stats()
    from cebench.cli import app

    app(args, prog_name="cebench")


if __name__ == "__main__":
    main(sys.argv[1:])
