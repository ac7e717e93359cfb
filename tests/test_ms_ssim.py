"""MS-SSIM against an independent implementation (pytorch-msssim), and where the harness computes it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_msssim import ms_ssim as reference
from skimage import data, transform

from cebench.metrics import MS_SSIM_MIN_SIDE, MS_SSIM_WEIGHTS, ms_ssim, score_batch


def photos(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two real photographs and a noisy, blurred copy of each: (2, 3, size, size) in [0, 1], float64."""
    images = [transform.resize(data.astronaut(), (size, size), anti_aliasing=True),
              transform.resize(data.chelsea(), (size, size), anti_aliasing=True)]
    target = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    rng = np.random.default_rng(0)
    pred = (torch.nn.functional.avg_pool2d(target, 3, 1, 1) + torch.from_numpy(rng.normal(0, 0.05, target.shape)))
    return pred.clamp(0, 1), target


@pytest.mark.parametrize("size", [176, 256])
def test_matches_pytorch_msssim(size: int) -> None:
    pred, target = photos(size)
    ours = ms_ssim(pred, target)
    theirs = reference(pred, target, data_range=1.0, size_average=False)  # the same standard weights by default
    assert ours.shape == (2,) and torch.allclose(ours, theirs.to(ours.dtype), rtol=0, atol=1e-6)
    assert 0.3 < float(ours.min()) < float(ours.max()) < 1
    gray = ms_ssim(pred[:, :1], target[:, :1])
    assert torch.allclose(gray, reference(pred[:, :1], target[:, :1], data_range=1.0, size_average=False).double(),
                          atol=1e-6)


def test_standard_weights_identity_and_size_limit() -> None:
    assert MS_SSIM_WEIGHTS == (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) and MS_SSIM_MIN_SIDE == 176
    _, target = photos(176)
    assert torch.allclose(ms_ssim(target, target), torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="at least 176x176"):
        ms_ssim(target[..., :175, :175], target[..., :175, :175])


def test_harness_scores_it_only_where_five_scales_fit() -> None:
    pred, target = photos(352)  # centre region 176 px
    region = torch.zeros(1, 1, 352, 352, dtype=torch.bool)
    region[..., 88:264, 88:264] = True
    scores = score_batch(pred, target, region, region="hole")
    crop = ms_ssim(pred[..., 88:264, 88:264], target[..., 88:264, 88:264])
    assert torch.allclose(scores["ms_ssim"], crop) and "luma_ms_ssim" in scores
    assert "ms_ssim" in score_batch(pred, target, None, region="image")
    small = score_batch(pred[..., :128, :128], target[..., :128, :128], region[..., :128, :128], region="hole")
    assert "ms_ssim" not in small and "psnr" in small
