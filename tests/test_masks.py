from __future__ import annotations

import pytest
import torch

from cebench.masks import MEAN_RGB, fill_holes, grow, make_masks, to_luma


def test_center_mask_is_pathaks_56_in_64() -> None:
    m = make_masks("center", 2, 128, 4)
    assert m.hole.shape == (2, 1, 128, 128)
    assert m.hole.sum() == 2 * 56 * 56 and m.region.sum() == 2 * 64 * 64
    assert m.region[0, 0, 32:96, 32:96].all() and m.hole[0, 0, 36:92, 36:92].all()
    w = m.loss_weights(10.0)
    assert w[0, 0, 32, 32] == 10 and w[0, 0, 64, 64] == 1 and w[0, 0, 0, 0] == 0


@pytest.mark.parametrize("size", [32, 64, 128])
def test_center_region_is_the_hole_grown_by_the_overlap(size: int) -> None:
    for overlap in range(size // 4 + 1):  # up to an empty hole (no region at all)
        m = make_masks("center", 2, size, overlap)
        assert torch.equal(m.region, grow(m.hole, overlap)), overlap


def test_block_masks_vary_and_stay_inside() -> None:
    m = make_masks("block", 64, 64, 2, torch.Generator().manual_seed(1))
    area = m.hole.float().mean((1, 2, 3))
    assert area.min() > 0 and area.std() > 0
    assert m.region.float().mean((1, 2, 3)).max() <= 0.25 + 1e-6


def test_region_masks_cover_20_to_30_percent() -> None:
    m = make_masks("region", 32, 64, 0, torch.Generator().manual_seed(2))
    cover = m.hole.float().mean((1, 2, 3))
    assert cover.min() >= 0.2 - 1e-3 and cover.max() <= 0.3 + 1e-3
    again = make_masks("region", 32, 64, 0, torch.Generator().manual_seed(2))
    assert torch.equal(m.hole, again.hole)


def test_fills() -> None:
    img = torch.zeros(1, 3, 8, 8)
    hole = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    hole[..., 2:4, 2:4] = True
    mean = fill_holes(img, hole, "mean")
    assert torch.allclose(mean[0, :, 2, 2], torch.tensor(MEAN_RGB)) and mean[0, :, 0, 0].abs().sum() == 0
    assert fill_holes(img + 0.5, hole, "zero")[0, :, 3, 3].abs().sum() == 0
    noise = fill_holes(img, hole, "noise", torch.Generator().manual_seed(0))
    assert noise[..., 2:4, 2:4].abs().sum() > 0 and noise.abs().max() <= 1
    gray = fill_holes(torch.zeros(1, 1, 8, 8), hole, "mean")
    assert torch.isclose(gray[0, 0, 2, 2], to_luma(torch.tensor(MEAN_RGB).view(1, 3, 1, 1))[0, 0, 0, 0])
    with pytest.raises(ValueError):
        fill_holes(img, hole, "blue")


def test_luma_is_bt601() -> None:
    """Gray variants train on, and are scored against, ITU-R BT.601 luma: Y' = 0.299 R' + 0.587 G' + 0.114 B'."""
    primaries = torch.eye(3, dtype=torch.float64).view(3, 3, 1, 1)  # pure red, green, blue
    assert to_luma(primaries).flatten().tolist() == pytest.approx([0.299, 0.587, 0.114], abs=1e-15)
    assert float(to_luma(torch.ones(1, 3, 1, 1, dtype=torch.float64))) == pytest.approx(1.0, abs=1e-15)
