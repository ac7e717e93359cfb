"""Benchmark shapes: paper scale on CUDA, small shapes on CPU (so `nox -s bench` finishes in minutes there)."""

from __future__ import annotations

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


@pytest.fixture(autouse=True)
def _record_machine(benchmark: Any) -> None:
    benchmark.extra_info["device"] = torch.cuda.get_device_name(0) if CUDA else f"cpu x{torch.get_num_threads()}"
    benchmark.extra_info["torch"] = torch.__version__


def record_rate(benchmark: Any, n: int, key: str = "images_per_s") -> float | None:
    """Store n / (mean seconds per round) in the benchmark's extra info; None when benchmarks are disabled."""
    stats = getattr(benchmark, "stats", None)
    if stats is None:
        return None
    rate = n / stats.stats.mean
    benchmark.extra_info[key] = round(rate, 1)
    return rate
