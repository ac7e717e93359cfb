"""Benchmark shapes: paper scale on CUDA, small shapes on CPU (so `nox -s bench` finishes in minutes there)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
# Paper shapes on a GPU (128 px, Pathak's width 64, 4000-d bottleneck); a scaled-down model on CPU.
SHAPE: dict[str, Any] = (
    {"image_size": 128} if CUDA else {"image_size": 32, "width": 16, "bottleneck_dim": 256, "overlap": 2}
)
BATCHES = (64, 256, 1024) if CUDA else (32, 128)
TRAIN_IMAGES = 15_000 if CUDA else 2048
SCORE_IMAGES = 10_000 if CUDA else 512


_FIGURES: list[tuple[str, dict[str, Any]]] = []  # (test name, extra info) of every benchmark run, for the summary


@pytest.fixture(autouse=True)
def _record_machine(benchmark: Any, request: pytest.FixtureRequest) -> Iterator[None]:
    benchmark.extra_info["device"] = torch.cuda.get_device_name(0) if CUDA else f"cpu x{torch.get_num_threads()}"
    benchmark.extra_info["torch"] = torch.__version__
    yield
    _FIGURES.append((request.node.name, dict(benchmark.extra_info)))


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own table
def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The measured figures side by side (pytest-benchmark's table shows seconds per round only)."""
    if not _FIGURES:
        return
    device = _FIGURES[0][1]["device"]
    terminalreporter.section(f"cebench figures on {device} (rates in images/s; references measured in the same run)")
    for name, info in _FIGURES:
        figures = {k: v for k, v in info.items() if k not in ("device", "torch", "shape")}
        terminalreporter.write_line(f"{name}: " + "; ".join(_describe(k, v) for k, v in figures.items()))


def _describe(key: str, value: Any) -> str:
    if isinstance(value, dict):  # plain vs fast per seed: show the means, their difference and the seed spread
        plain, fast = (sum(value[k]) / len(value[k]) for k in ("plain", "fast"))
        return f"{key} plain {plain:.4g} fast {fast:.4g} (diff {value['mean_difference']:+.3g}, " \
               f"seed std {value['plain_seed_std']:.3g})"
    return f"{key} {value:,}" if isinstance(value, int | float) else f"{key} {value}"


def record_rate(benchmark: Any, n: int, key: str = "images_per_s") -> float | None:
    """Store n / (mean seconds per round) in the benchmark's extra info; None when benchmarks are disabled."""
    stats = getattr(benchmark, "stats", None)
    if stats is None:
        return None
    rate = n / stats.stats.mean
    benchmark.extra_info[key] = round(rate, 1)
    return rate
