"""Training throughput: cebench's trainer per preset and batch size, and the plain loop on the same model and batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks.conftest import BATCHES, DEVICE, SHAPE, TRAIN_IMAGES
from benchmarks.plain_loop import plain_epoch, write_pngs
from cebench.config import DataConfig
from cebench.data.source import load_split
from cebench.registry import create_variant
from cebench.train import fit


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return load_split(DataConfig(n_train=TRAIN_IMAGES), "train", SHAPE["image_size"], DEVICE)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("preset", ["landscape2023", "pathak2016_l2", "channelwise2016"])
def test_train_images_per_s(benchmark: Any, images: torch.Tensor, preset: str, batch: int, tmp_path: Path) -> None:
    variant = create_variant(preset, **SHAPE, batch_size=batch, epochs=1)
    empty = images[:0]
    # Each fit compiles afresh with static shapes (a dynamo reset), so no earlier test's shapes leak into this one's
    # graphs; this first fit fills the compiler's caches on disk, which later fits read, as a second run would.
    fit(variant, images[: batch * 2], empty, 0, tmp_path / "warmup")
    result = benchmark.pedantic(lambda: fit(variant, images, empty, 0, tmp_path / "run"), rounds=2, iterations=1)
    benchmark.extra_info["images_per_s"] = round(result.images_per_s, 1)  # after the fit's warm-up step
    benchmark.extra_info["warmup_s"] = round(result.warmup_s, 2)
    benchmark.extra_info["shape"] = f"{SHAPE}, batch {batch}"


def test_plain_loop_vs_cebench(benchmark: Any, images: torch.Tensor, tmp_path: Path) -> None:
    """cebench's trainer timed against the same model and batch trained the plain way (fp32, a DataLoader over PNG
    files, the loss read every step). Only cebench's default path is the benchmark, so `--compare` guards our code
    alone; the other path (the fast one on CPU, plain fp32 on CUDA) is recorded beside it."""
    batch = BATCHES[0]
    variant = create_variant("landscape2023", **SHAPE, batch_size=batch, epochs=1)
    subset = images[: min(len(images), 2048)]
    files = write_pngs(subset.cpu(), tmp_path / "pngs")
    plain = max(plain_epoch(variant, files, DEVICE) for _ in range(2))
    default_fast = DEVICE.type == "cuda"
    fit(variant, subset[: batch * 2], subset[:0], 0, tmp_path / "warm", fast=not default_fast)  # compile it first
    other = max(fit(variant, subset, subset[:0], 0, tmp_path / "other", fast=not default_fast).images_per_s
                for _ in range(2))
    result = benchmark.pedantic(lambda: fit(variant, subset, subset[:0], 0, tmp_path / "default"), rounds=2, iterations=1)
    ours = result.images_per_s
    benchmark.extra_info["plain_images_per_s"] = round(plain, 1)
    benchmark.extra_info["cebench_images_per_s"] = round(ours, 1)
    benchmark.extra_info["speedup"] = round(ours / plain, 2)
    key = "cebench_plain_fp32" if default_fast else "cebench_fast_bf16_compile"
    benchmark.extra_info[f"{key}_images_per_s"] = round(other, 1)
    benchmark.extra_info[f"{key}_speedup"] = round(other / plain, 2)
