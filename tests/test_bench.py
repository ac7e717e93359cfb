from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cebench.bench import peak_of, peak_tflops, score_rate, step_flops, train_rate
from cebench.registry import create_variant, list_variants
from cebench.task import Task
from tests.conftest import TINY


@pytest.mark.parametrize(("joint", "l2"), [("pathak2016", "pathak2016_l2"), ("landscape2023", "-")])
def test_step_flops_count_the_critic_as_fit_runs_it(joint: str, l2: str) -> None:
    """A joint step costs an L2 step plus the critic twice forward and backward (its own step on real and fake) and
    once forward with the backward to its input only (the generator's loss: the critic is frozen there)."""
    variant = create_variant(joint)
    task = Task(variant)
    critic = task.build_discriminator()
    assert critic is not None
    real = torch.zeros(2, variant.n_channels, variant.image_size, variant.image_size)
    x = task.critic_input(real, task.crop(real))

    def flops(fn: Callable[[], None]) -> int:
        with FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops()

    forward = flops(lambda: critic(x).sum().detach_())
    own_step = flops(lambda: critic(x).sum().backward())  # x needs no gradient: the weights' (and what they need)
    critic.requires_grad_(False)
    for_generator = flops(lambda: critic(x.clone().requires_grad_()).sum().backward())  # to the input, no weights
    critic_work = 2 * own_step + for_generator
    l2_variant = create_variant(l2) if l2 in list_variants() else variant.model_copy(update={"loss": "l2"})
    assert step_flops(variant) == pytest.approx(step_flops(l2_variant) + critic_work / 2, rel=1e-9)
    assert own_step > forward and for_generator > forward


@pytest.mark.parametrize(("name", "peak"), [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H100 NVL", 835.0),
    ("NVIDIA H200", 989.0), ("NVIDIA H200 NVL", 835.0), ("NVIDIA A100-SXM4-80GB", 312.0), ("Tesla T4", None),
])
def test_peak_by_device_name_tells_the_h100_form_factors_apart(name: str, peak: float | None) -> None:
    assert peak_of(name) == peak


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


def test_warm_up_is_one_step_and_two_with_cuda_graphs(monkeypatch: pytest.MonkeyPatch) -> None:
    """`bench.train_rate` gives the fit this many extra steps, so `steps` of them are timed on every path."""
    import cebench.train

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.setattr(cebench.train, "CUDA_GRAPHS", True)
    assert [cebench.train.warmup_steps(d, f) for d, f in ((cuda, True), (cuda, False), (cpu, True))] == [2, 1, 1]
    monkeypatch.setattr(cebench.train, "CUDA_GRAPHS", False)  # CEBENCH_CUDA_GRAPHS=0
    assert cebench.train.warmup_steps(cuda, True) == 1
