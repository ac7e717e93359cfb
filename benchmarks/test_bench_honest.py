"""Numerical honesty of the fast path: bf16 + channels_last + torch.compile against plain fp32, same seeds and data.

Records both paths' test metrics per seed; the fast path is honest when its mean is within the seed spread of the
plain one. CUDA only: on CPU the trainer always runs the plain fp32 path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks.conftest import CUDA, DEVICE
from cebench.config import DataConfig
from cebench.data.source import load_split
from cebench.evaluate import evaluate
from cebench.registry import create_variant
from cebench.task import Task
from cebench.train import fit

SEEDS = (0, 1, 2)


@pytest.mark.skipif(not CUDA, reason="the fast path (bf16, channels_last, compile) exists on CUDA only")
def test_fast_path_matches_plain_fp32(benchmark: Any, tmp_path: Path) -> None:
    data = DataConfig(n_train=15_000, n_val=0, n_test=1_000)
    train, test = (load_split(data, split, 128, DEVICE) for split in ("train", "test"))
    variant = create_variant("landscape2023", batch_size=256, lr_scaling="sqrt", epochs=10)
    task = Task(variant)

    def psnr(fast: bool, seed: int) -> float:
        result = fit(variant, train, train[:0], seed, tmp_path / f"{fast}-{seed}", fast=fast)
        return float(evaluate(result.generator, task, test, amp=fast)["psnr"].mean())

    plain = [psnr(False, s) for s in SEEDS]
    fast = benchmark.pedantic(lambda: [psnr(True, s) for s in SEEDS], rounds=1, iterations=1)
    spread = torch.tensor(plain).std().item()
    benchmark.extra_info.update(plain_psnr=plain, fast_psnr=fast, plain_seed_std=round(spread, 4),
                                mean_difference=round(sum(fast) / len(fast) - sum(plain) / len(plain), 4))
