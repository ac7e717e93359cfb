from __future__ import annotations

import torch

from cebench.bench import peak_tflops, score_rate, step_flops, train_rate
from cebench.registry import create_variant
from tests.conftest import TINY


def test_step_flops_match_the_design_count() -> None:
    # DESIGN.md: one joint-loss step of Pathak's model costs ~3.93 GFLOP per 128 px image; L2 alone skips the critic.
    assert abs(step_flops(create_variant("pathak2016")) / 3.93e9 - 1) < 0.01
    assert step_flops(create_variant("pathak2016_l2")) < 0.55 * step_flops(create_variant("pathak2016"))


def test_rates_are_measured() -> None:
    cpu = torch.device("cpu")
    rate, warmup_s = train_rate(create_variant("landscape2023", **TINY), cpu, steps=2)
    assert rate > 0 and warmup_s > 0
    assert score_rate(cpu, 16) > 0
    assert peak_tflops(cpu) is None
