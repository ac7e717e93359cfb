"""Operators dispatched per training step outside compiled code: what bounds a GPU at small batches, where launching
~100 kernels one by one takes longer than the step's arithmetic. Counted on any device, a GPU not needed.

Usage: python -m benchmarks.overhead [--steps N]

`fit` runs one epoch under the PyTorch profiler; the steps are told apart by their optimiser updates (one per step for
an L2 variant, two for a joint one), and a step's count is the ATen operators started between the end of one step's
last update and the next's, called from Python or the autograd engine (not from inside another operator) and not inside
a compiled region or its backward. "kernels" leaves out those that only make views or aliases (detach, slice,
reshape, ...; `to` when it copies nothing), which launch nothing on a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from torch.autograd.profiler_util import FunctionEvent
from torch.profiler import ProfilerActivity, profile

from cebench.config import DataConfig
from cebench.data.source import load_split
from cebench.registry import create_variant
from cebench.train import fit

COMPILED = ("Torch-Compiled Region", "CompiledFunction", "## Call CompiledFxGraph")
NO_KERNEL = {f"aten::{name}" for name in (
    "detach", "detach_", "slice", "select", "view", "_unsafe_view", "reshape", "_reshape_alias", "unsqueeze",
    "squeeze", "expand", "expand_as", "as_strided", "alias", "t", "transpose", "permute", "lift_fresh", "to",
    "empty", "empty_like", "empty_strided", "flatten", "unflatten", "narrow", "split", "chunk", "contiguous",
    "_to_copy_noop",
)}
SHAPE: dict[str, Any] = {"image_size": 32, "width": 8, "bottleneck_dim": 32, "batch_size": 16}


def _outside_compiled(event: FunctionEvent) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::") or parent.name.startswith(COMPILED):
            return False
        parent = parent.cpu_parent
    return True


def _launches(event: FunctionEvent) -> bool:
    """Whether the operator (or one it calls) does more than make a view: a kernel on a GPU."""
    return event.name not in NO_KERNEL or any(_launches(c) for c in event.cpu_children if c.name.startswith("aten::"))


def ops_per_step(preset: str, fast: bool, steps: int = 8, device: torch.device | None = None) -> dict[str, Any]:
    """The median per-step count of operators dispatched outside compiled code (`ops`), of those that launch a kernel
    (`kernels`), and the operators of one such step by name (`names`), for `preset` at a tiny shape."""
    device = device or torch.device("cpu")
    variant = create_variant(preset, **SHAPE, epochs=1)
    images = load_split(DataConfig(n_train=steps * variant.batch_size), "train", variant.image_size, device)
    with tempfile.TemporaryDirectory() as tmp:
        # Each fit compiles afresh: this one fills the compilers' caches on disk, so the profiled fit's first step
        # (which compiles again, left out of the count below) is quick.
        fit(variant, images[: 2 * variant.batch_size], images[:0], 0, Path(tmp) / "warm", fast=fast)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fit(variant, images, images[:0], 0, Path(tmp) / "run", fast=fast)
    events = prof.events()
    top = sorted((e for e in events if e.name.startswith("aten::") and _outside_compiled(e)),
                 key=lambda e: e.time_range.start)
    updates = 2 if variant.loss == "joint" else 1
    ends = sorted(e.time_range.end for e in events if e.name.startswith("Optimizer.step#"))[updates - 1 :: updates]
    # Steps 3.. of the epoch: the first (warm-up, compiling again after the per-fit reset) and the epoch's end are out.
    windows = [[e for e in top if a < e.time_range.start <= b] for a, b in pairwise(ends[1:])]
    if not windows:
        raise ValueError(f"{steps} steps leave no steady step to count; use at least 4")
    ops = [len(w) for w in windows]
    kernels = [sum(_launches(e) for e in w) for w in windows]
    middle = windows[len(windows) // 2]
    return {"ops": statistics.median(ops), "kernels": statistics.median(kernels),
            "names": Counter(e.name.removeprefix("aten::") for e in middle)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="steps of the profiled epoch (>= 4)")
    args = parser.parse_args(argv)
    print(f"operators per training step outside compiled code ({SHAPE}; torch {torch.__version__})")
    print(f"{'preset':<16} {'path':<22} {'ops':>5} {'kernels':>8}")
    for preset in ("landscape2023", "pathak2016_l2"):
        for fast, label in ((False, "eager (plain fp32)"), (True, "compiled (fast path)")):
            counts = ops_per_step(preset, fast, args.steps)
            print(f"{preset:<16} {label:<22} {counts['ops']:>5} {counts['kernels']:>8}")
            if fast:
                print("  " + ", ".join(f"{name} x{n}" for name, n in counts["names"].most_common()))


if __name__ == "__main__":
    main()
