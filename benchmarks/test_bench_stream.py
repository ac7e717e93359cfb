"""Training from packs of 2K, 20K and 200K images at 64 px: peak host memory and images/s, streamed and loaded whole.

Streamed, both should stay flat as the pack grows (the issue's target); loaded whole, memory grows with the pack. Each
(size, mode) runs in a fresh process, so its peak resident memory (VmHWM in /proc/self/status) is its own. The packs
(random images; 2K: 25 MB, 20K: 246 MB, 200K: 2.4 GB) are made once under `$CEBENCH_CACHE/bench-packs`; the 200K one
is opt-in (`CEBENCH_BENCH_200K=1`: 2.4 GB of disk and several minutes of CPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from benchmarks.conftest import CUDA, DEVICE
from cebench.config import Variant
from cebench.data.pack import Pack, cache_dir, current, plan, write_pack
from cebench.data.source import image_batch
from cebench.data.stream import InMemory, Streamed, TrainSource
from cebench.device import synchronize
from cebench.train import fit

SIZE = 64
SIZES = (2_000, 20_000) + ((200_000,) if os.environ.get("CEBENCH_BENCH_200K") == "1" else ())
# The model is beside the point here (the data side is): a small one on CPU, Pathak's widths on a GPU.
VARIANT = Variant(image_size=SIZE, loss="l2", overlap=2, batch_size=128, epochs=1,
                  **({} if CUDA else {"width": 8, "bottleneck_dim": 64}))


def random_pack(n: int) -> Path:
    """A pack of n random 64 px images in the cache (made on first use; each chunk seeded by its position)."""
    out = cache_dir() / "bench-packs" / f"random-{n}-{SIZE}"
    wanted = plan("random images", f"random-{n}", [f"{i:07d}.png" for i in range(n)], SIZE, SIZE)

    def decode(names: Sequence[str]) -> list[np.ndarray | None]:
        rng = np.random.default_rng(int(names[0][:7]))
        return list(rng.integers(0, 256, (len(names), SIZE, SIZE, 3), dtype=np.uint8))

    if not current(out, wanted):
        write_pack(out, wanted, decode, label=f"packing {n:,} random images")
    return out


@pytest.mark.parametrize("mode", ["streamed", "loaded"])
@pytest.mark.parametrize("n", SIZES)
def test_train_from_pack(benchmark: Any, n: int, mode: str) -> None:
    pack = random_pack(n)
    figures: dict[str, Any] = {}

    def measure() -> None:
        root = Path(__file__).resolve().parents[1]
        done = subprocess.run([sys.executable, "-m", "benchmarks.test_bench_stream", str(pack), mode], cwd=root,
                              capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(root)})
        figures.update(json.loads(done.stdout.strip().splitlines()[-1]))

    benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
    assert figures["images"] == n // VARIANT.batch_size * VARIANT.batch_size  # one whole epoch was read and trained


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _one(path: Path, mode: str) -> dict[str, Any]:
    """In a fresh process: one epoch of batches (crops only) and one epoch of training, on `path` held as `mode`."""
    pack = Pack(path)
    rows = np.arange(len(pack))
    source: TrainSource = Streamed(pack, rows, DEVICE) if mode == "streamed" else \
        InMemory(pack.read(rows, DEVICE), chunk=int(pack.index["chunk"]))
    rng = torch.Generator(DEVICE).manual_seed(0)
    bs = VARIANT.batch_size
    start = time.perf_counter()
    seen = 0
    for images, idx in source.batches(source.order(rng), 0, bs):
        image_batch(images, idx, SIZE, gray=False, train=True, generator=rng)
        seen += len(idx)
    synchronize(DEVICE)
    data_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        result = fit(VARIANT, source, torch.zeros((0, 3, SIZE, SIZE), dtype=torch.uint8, device=DEVICE), 0,
                     Path(tmp), fast=False)
    return {"images": seen, "data_images_per_s": round(seen / data_s, 1),
            "train_images_per_s": round(result.images_per_s, 1), "peak_rss_mb": round(peak_rss_mb(), 1)}


if __name__ == "__main__":
    print(json.dumps(_one(Path(sys.argv[1]), sys.argv[2])))
