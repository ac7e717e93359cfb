"""Shared fixtures: tiny variants and data so the whole suite stays fast on 2 CPU cores."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from cebench.config import DataConfig

TINY: dict[str, Any] = {"image_size": 32, "width": 8, "bottleneck_dim": 32, "batch_size": 16, "epochs": 2}
TINY_DATA = DataConfig(n_train=64, n_val=16, n_test=16, seed=3)


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Packed folders go to a per-session temporary cache, never the user's ~/.cache."""
    monkeypatch.setenv("CEBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
