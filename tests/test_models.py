from __future__ import annotations

import pytest
import torch

from cebench.masks import make_masks
from cebench.models import count_parameters
from cebench.registry import create_variant, list_variants
from cebench.task import Task
from tests.conftest import TINY


@pytest.mark.parametrize("name", list_variants())
@pytest.mark.parametrize("mask", ["center", "block"])
def test_every_variant_builds_and_trains_one_step(name: str, mask: str) -> None:
    v = create_variant(name, **{**TINY, "mask": mask, "overlap": 1})
    task = Task(v)
    g, d = task.build_generator(), task.build_discriminator()
    real = torch.rand(4, v.n_channels, 32, 32) * 2 - 1
    masks = make_masks(v.mask, 4, 32, v.overlap, torch.Generator().manual_seed(0))
    pred = g(torch.where(masks.hole, 0.0, real))
    side = 16 if mask == "center" else 32
    assert pred.shape == (4, v.n_channels, side, side)
    assert pred.abs().max() <= 1  # Tanh output
    loss = ((pred - task.crop(real)) ** 2).mean()
    if d is not None:
        logits = d(task.critic_input(real, pred))
        assert logits.shape == (4,)
        loss = loss + logits.mean()
    loss.backward()
    grads = [p.grad for p in g.parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    assert (v.loss == "joint") == (d is not None)


def test_fc_bottleneck_is_pathaks_65m_and_channelwise_is_small() -> None:
    fc = Task(create_variant("pathak2016")).build_generator()
    assert abs(count_parameters(fc.bottleneck) - 65.5e6) < 0.1e6
    assert abs(count_parameters(fc) - 71.1e6) < 0.1e6  # the reproduction paper: the fc layer is ~92% of the model
    cw = Task(create_variant("channelwise2016")).build_generator()
    assert count_parameters(cw.bottleneck) < 1e6
    assert cw.eval()(torch.zeros(1, 3, 128, 128)).shape == (1, 3, 64, 64)


def test_context_critic_sees_78px_at_128() -> None:
    task = Task(create_variant("landscape2023"))
    real = torch.randn(2, 3, 128, 128)
    pred = torch.randn(2, 3, 64, 64)
    seen = task.critic_input(real, pred)
    assert seen.shape == (2, 3, 78, 78)
    assert torch.equal(seen[..., 7:71, 7:71], pred)  # the prediction in the middle
    assert torch.equal(seen[..., :7, :], real[..., 25:32, 25:103])  # real context around it
    d = task.build_discriminator()
    assert d is not None and d(seen).shape == (2,)


def test_composite_replaces_only_the_region() -> None:
    task = Task(create_variant("pathak2016", **TINY))
    real = torch.zeros(1, 3, 32, 32)
    masks = make_masks("center", 1, 32, 4)
    out = task.composite(real, torch.ones(1, 3, 16, 16), masks)
    assert out.sum() == 3 * 16 * 16
    assert out[..., 8:24, 8:24].min() == 1
