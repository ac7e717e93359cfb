"""Data: generating the procedural landscapes, packing an image folder, and loading the pack again from the cache."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from benchmarks.conftest import DEVICE, TRAIN_IMAGES, record_rate
from benchmarks.plain_loop import write_pngs
from cebench.data import landscapes
from cebench.data.folder import pack_or_load
from cebench.device import synchronize


def test_generate_landscapes(benchmark: Any) -> None:
    n = 15_000 if DEVICE.type == "cuda" else 2_000

    def generate() -> None:
        landscapes.generate_range(0, 0, n, 128, device=DEVICE)
        synchronize(DEVICE)  # a GPU is still drawing when the call returns

    benchmark.pedantic(generate, rounds=2, iterations=1, warmup_rounds=1)
    record_rate(benchmark, n)


FOLDER_IMAGES = min(TRAIN_IMAGES, 1000)


@pytest.fixture
def png_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of 160 px PNG landscapes, with the pack cache in `tmp_path / "cache"`."""
    monkeypatch.setenv("CEBENCH_CACHE", str(tmp_path / "cache"))
    write_pngs(landscapes.generate_range(0, 0, FOLDER_IMAGES, 160), tmp_path / "pngs")
    return tmp_path / "pngs"


def test_pack_folder(benchmark: Any, png_folder: Path, tmp_path: Path) -> None:
    def pack_fresh() -> None:
        shutil.rmtree(tmp_path / "cache", ignore_errors=True)
        pack_or_load(png_folder, 128, 140)

    benchmark.pedantic(pack_fresh, rounds=2, iterations=1)
    record_rate(benchmark, FOLDER_IMAGES)


def test_load_packed_folder(benchmark: Any, png_folder: Path) -> None:
    """The second run on a folder: the pack is reused (the folder is only listed and stat'ed), not decoded again."""
    pack_or_load(png_folder, 128, 140)

    def reuse() -> None:
        pack, _, made = pack_or_load(png_folder, 128, 140)
        assert not made  # the timing is only meaningful if the cache was hit
        pack.read(range(len(pack)), DEVICE)
        synchronize(DEVICE)

    benchmark.pedantic(reuse, rounds=3, iterations=1)
    record_rate(benchmark, FOLDER_IMAGES)
