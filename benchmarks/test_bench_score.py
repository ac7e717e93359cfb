"""Scoring throughput: all four metrics plus sharpness, batched in torch, against a scikit-image loop on CPU that does
the same work (RGB and luma, four metrics and sharpness, float64), in the same run."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from benchmarks.conftest import DEVICE, SCORE_IMAGES, record_rate
from cebench.config import DataConfig
from cebench.data.source import load_split
from cebench.device import synchronize
from cebench.masks import make_masks
from cebench.metrics import score_batch


@pytest.fixture(scope="module")
def pairs() -> tuple[torch.Tensor, torch.Tensor]:
    truth = load_split(DataConfig(n_test=SCORE_IMAGES), "test", 128, DEVICE).float() / 255
    pred = (truth + 0.05 * torch.randn_like(truth)).clamp(0, 1)
    return pred, truth


LUMA = np.array([0.299, 0.587, 0.114])  # BT.601, as cebench.masks.to_luma


def reference_scores(p: np.ndarray, t: np.ndarray) -> list[float]:
    """What the harness computes for one (H, W, C) pair, the way a user would with scikit-image and scipy."""
    gradient = [np.hypot(ndimage.sobel(x[..., c], axis=0), ndimage.sobel(x[..., c], axis=1))[1:-1, 1:-1]
                for x in (p, t) for c in range(p.shape[-1])]
    half = len(gradient) // 2
    return [
        structural_similarity(t, p, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1,
                              channel_axis=-1),
        peak_signal_noise_ratio(t, p, data_range=1),
        float(np.abs(p - t).mean()),
        float(((p - t) ** 2).mean()),
        float(np.mean(gradient[:half]) / np.mean(gradient[half:])),
    ]


def skimage_loop(pred: np.ndarray, truth: np.ndarray) -> None:
    for p, t in zip(pred, truth, strict=True):
        reference_scores(p, t)
        reference_scores((p @ LUMA)[..., None], (t @ LUMA)[..., None])


def test_score_images_per_s(benchmark: Any, pairs: tuple[torch.Tensor, torch.Tensor]) -> None:
    pred, truth = pairs
    region = make_masks("center", len(pred), 128, 4, None).region.to(DEVICE)

    def score_all() -> None:
        for i in range(0, len(pred), 2500):
            score_batch(pred[i : i + 2500], truth[i : i + 2500], region[i : i + 2500], "hole")
        synchronize(DEVICE)

    benchmark.pedantic(score_all, rounds=3, iterations=1, warmup_rounds=1)
    ours = record_rate(benchmark, len(pred))
    n_ref = min(200, len(pred))  # the reference loop is slow: time a subset, per image
    crop = (slice(None), slice(None), slice(32, 96), slice(32, 96))
    p_np = pred[crop][:n_ref].permute(0, 2, 3, 1).double().cpu().numpy()
    t_np = truth[crop][:n_ref].permute(0, 2, 3, 1).double().cpu().numpy()
    # The ratio is only fair if both sides compute the same numbers: check on a few images.
    scores = score_batch(pred[:4], truth[:4], region[:4], "hole")
    for i in range(4):
        ours_i = [scores[k][i].item() for k in ("ssim", "psnr", "l1", "l2", "sharpness")]
        assert np.allclose(reference_scores(p_np[i], t_np[i]), np.array(ours_i) / [1, 1, 100, 100, 1], rtol=1e-9)
    t0 = time.perf_counter()
    skimage_loop(p_np, t_np)
    reference = n_ref / (time.perf_counter() - t0)
    benchmark.extra_info["skimage_images_per_s"] = round(reference, 1)
    if ours is not None:
        benchmark.extra_info["speedup_vs_skimage"] = round(ours / reference, 1)
