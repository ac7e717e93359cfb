"""Operators dispatched per training step outside compiled code (`benchmarks/overhead.py`): the compiled step against
the same step run eagerly. On a GPU each of them is a kernel launch or at least a trip through the dispatcher, which
bounds the step at small batches whatever the arithmetic."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.conftest import DEVICE
from benchmarks.overhead import ops_per_step


@pytest.mark.parametrize("preset", ["landscape2023", "pathak2016_l2"])
def test_ops_per_step_outside_compiled_code(benchmark: Any, preset: str) -> None:
    eager = ops_per_step(preset, fast=False, device=DEVICE)
    compiled = benchmark.pedantic(lambda: ops_per_step(preset, fast=True, device=DEVICE), rounds=1, iterations=1)
    for name, counts in (("eager", eager), ("compiled", compiled)):
        benchmark.extra_info[f"{name}_ops_per_step"] = counts["ops"]
        benchmark.extra_info[f"{name}_kernel_ops_per_step"] = counts["kernels"]
    # A measurement, with one sanity bound: compiling the step must leave fewer operators outside compiled code.
    assert compiled["kernels"] < eager["kernels"]
