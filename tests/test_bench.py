from __future__ import annotations

import time

import torch

from cebench.bench import peak_tflops, score_rate, step_flops, train_rate
from cebench.registry import create_variant
from tests.conftest import TINY


def test_step_flops_match_the_design_count() -> None:
    # DESIGN.md: one joint-loss step of Pathak's model costs ~3.93 GFLOP per 128 px image; L2 alone skips the critic.
    assert abs(step_flops(create_variant("pathak2016")) / 3.93e9 - 1) < 0.01
    assert step_flops(create_variant("pathak2016_l2")) < 0.55 * step_flops(create_variant("pathak2016"))


def test_rates_are_measured() -> None:
    """Each rate counts images over a part of its call's wall time, so it is at least images / the whole call."""
    cpu = torch.device("cpu")
    variant = create_variant("landscape2023", **TINY)
    t0 = time.perf_counter()
    rate, warmup_s = train_rate(variant, cpu, steps=2)
    wall_s = time.perf_counter() - t0
    assert 2 * variant.batch_size / wall_s <= rate and 0 < warmup_s < wall_s
    t0 = time.perf_counter()
    rate = score_rate(cpu, 16)
    assert 16 / (time.perf_counter() - t0) <= rate
    assert peak_tflops(cpu) is None
