"""cebench.metrics against independent references: scikit-image, scipy.ndimage and plain numpy."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage import data, filters, transform
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from cebench import metrics as M
from cebench.masks import make_masks

# ITU-R BT.601 luma, written out from the standard (Y' = 0.299 R' + 0.587 G' + 0.114 B'), not read from cebench.
BT601 = np.array([0.299, 0.587, 0.114])
# Everything is computed in float64, so the agreement is far tighter than the 1e-4 (SSIM) / 1e-5 (others) required.
TOL = 1e-9

Array = np.ndarray


# ----------------------------------------------------------------------------------------------------------------------
# References


def ref_ssim(gt: Array, pred: Array) -> float:
    """The reference SSIM settings (Wang et al. 2004), on (H, W, C) or (H, W) float64."""
    return float(structural_similarity(gt, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                       data_range=1, channel_axis=-1 if gt.ndim == 3 else None))


def ref_ssim_map(gt: Array, pred: Array) -> Array:
    """scikit-image's full SSIM map (H, W, C), 5 px border cropped."""
    _, full = structural_similarity(gt, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=1, channel_axis=-1, full=True)
    return full[5:-5, 5:-5]


def ref_gradient(image: Array) -> Array:
    """Sobel magnitude per channel of (H, W, C), 1 px border cropped (scipy.ndimage.sobel, channel by channel)."""
    mags = []
    for c in range(image.shape[2]):
        gy = ndimage.sobel(image[:, :, c], axis=0)
        gx = ndimage.sobel(image[:, :, c], axis=1)
        mags.append(np.hypot(gx, gy)[1:-1, 1:-1])
    return np.stack(mags, axis=-1)


def ref_sharpness(gt: Array, pred: Array, mask: Array | None = None) -> float:
    """Ratio of mean gradient magnitudes; `mask` (H, W) restricts the 1 px-cropped maps."""
    gp, gt_ = ref_gradient(pred), ref_gradient(gt)
    if mask is not None:
        m = mask[1:-1, 1:-1]
        return float(gp[m].mean() / gt_[m].mean())
    return float(gp.mean() / gt_.mean())


def ref_all(gt: Array, pred: Array) -> dict[str, float]:
    """Every metric for one (H, W, C) pair."""
    mse = float(np.mean((pred - gt) ** 2))
    return {
        "l1": float(np.mean(np.abs(pred - gt))) * 100,
        "l2": mse * 100,
        "psnr": float(peak_signal_noise_ratio(gt, pred, data_range=1)),
        "ssim": ref_ssim(gt, pred),
        "sharpness": ref_sharpness(gt, pred),
    }


def luma(image: Array) -> Array:
    """(H, W, 3) -> (H, W, 1) with BT.601 weights."""
    return (image @ BT601)[..., None]


def to_tensor(images: list[Array]) -> torch.Tensor:
    """List of (H, W, C) arrays -> (N, C, H, W) float64 tensor."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def to_array(images: torch.Tensor) -> list[Array]:
    return list(images.permute(0, 2, 3, 1).double().numpy())


def deviation(got: float | torch.Tensor, expected: float) -> float:
    """Absolute deviation for values up to 1 (SSIM, sharpness ~1), relative above (PSNR in dB, L1/L2 in %)."""
    return abs(float(got) - expected) / max(1.0, abs(expected))


def assert_close(got: torch.Tensor, expected: list[float], tol: float = TOL) -> None:
    got_np = got.detach().cpu().double().numpy()
    assert got_np.shape == (len(expected),)
    err = max(deviation(a, b) for a, b in zip(got_np, expected, strict=True))
    assert err <= tol, f"max deviation {err:.3g} > {tol:g}: {got_np} vs {expected}"


# ----------------------------------------------------------------------------------------------------------------------
# Test images


def _resize(image: Array, size: int) -> Array:
    image = image.astype(np.float64) / 255.0
    if image.ndim == 2:
        image = image[..., None]
    h, w = image.shape[:2]
    side = min(h, w)
    square = image[(h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]
    return np.clip(transform.resize(square, (size, size), anti_aliasing=True), 0, 1)


def photos(size: int = 64) -> list[Array]:
    """Real photographs shipped with scikit-image, RGB, (size, size, 3) in [0, 1]."""
    return [_resize(f(), size) for f in (data.astronaut, data.coffee, data.chelsea)]


def gray_photo(size: int = 64) -> Array:
    return _resize(data.camera(), size)


def degrade(images: list[Array], seed: int = 0) -> list[Array]:
    """One degradation per image, cycling: blur, noise, 2 px shift, centre hole filled with the mean colour."""
    rng = np.random.default_rng(seed)
    out = []
    for i, image in enumerate(images):
        kind = i % 4
        if kind == 0:
            pred = filters.gaussian(image, sigma=1.2, channel_axis=-1)
        elif kind == 1:
            pred = np.clip(image + rng.normal(0, 0.05, image.shape), 0, 1)
        elif kind == 2:
            pred = np.roll(image, shift=(2, -1), axis=(0, 1))
        else:
            pred = image.copy()
            s = image.shape[0]
            pred[s // 4 : 3 * s // 4, s // 4 : 3 * s // 4] = image.mean(axis=(0, 1))
        out.append(pred)
    return out


def noise_images(n: int, size: int, channels: int, seed: int) -> list[Array]:
    rng = np.random.default_rng(seed)
    return list(rng.random((n, size, size, channels)))


def smooth_images(n: int, size: int, channels: int, seed: int) -> list[Array]:
    """Gradients plus blurred noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    out = []
    for _ in range(n):
        base = (rng.random() * yy + rng.random() * xx)[..., None] / 2
        blob = ndimage.gaussian_filter(rng.random((size, size, channels)), sigma=(4, 4, 0))
        out.append(np.clip(base + 0.5 * blob, 0, 1))
    return out


def cases() -> dict[str, tuple[list[Array], list[Array]]]:
    """name -> (targets, predictions), all (H, W, C) float64 in [0, 1]."""
    gts = [*photos(), np.repeat(gray_photo(), 3, axis=-1)]
    noisy = noise_images(3, 48, 3, seed=1)
    smooth = smooth_images(3, 40, 3, seed=2)
    gray = [gray_photo(), smooth_images(1, 64, 1, seed=3)[0]]
    return {
        "photos": (gts, degrade(gts)),
        "noise": (noisy, noise_images(3, 48, 3, seed=4)),
        "smooth": (smooth, degrade(smooth, seed=5)),
        "noise_vs_smooth": (noisy, [np.clip(g + 0.3, 0, 1) for g in smooth_images(3, 48, 3, seed=6)]),
        "gray": (gray, degrade(gray, seed=7)),
    }


CASES = cases()
METRIC_FUNCS: dict[str, Callable[..., torch.Tensor]] = {
    "l1": M.l1,
    "l2": M.l2,
    "psnr": M.psnr,
    "ssim": M.ssim,
    "sharpness": M.sharpness,
}


# ----------------------------------------------------------------------------------------------------------------------
# Every metric against its reference


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", M.METRICS)
def test_metric_matches_reference(case: str, name: str) -> None:
    gts, preds = CASES[case]
    got = METRIC_FUNCS[name](to_tensor(preds), to_tensor(gts))
    expected = [ref_all(g, p)[name] for g, p in zip(gts, preds, strict=True)]
    assert_close(got, expected)


@pytest.mark.parametrize("name", M.METRICS)
def test_float32_inputs_are_scored_in_float64(name: str) -> None:
    gts, preds = CASES["photos"]
    g32, p32 = to_tensor(gts).float(), to_tensor(preds).float()
    got = METRIC_FUNCS[name](p32, g32)
    expected = [ref_all(g, p)[name] for g, p in zip(to_array(g32), to_array(p32), strict=True)]
    assert got.dtype == torch.float64
    assert_close(got, expected)


def test_all_metrics_and_keys() -> None:
    gts, preds = CASES["smooth"]
    got = M.all_metrics(to_tensor(preds), to_tensor(gts))
    assert tuple(got) == M.METRICS
    for i, (g, p) in enumerate(zip(gts, preds, strict=True)):
        for name, value in ref_all(g, p).items():
            assert deviation(got[name][i], value) <= TOL


def test_ssim_border_mode_does_not_matter() -> None:
    """An independent SSIM with scipy's Gaussian filter in every border mode, cropped, equals skimage (and ours)."""
    gt, pred = CASES["photos"][0][0][..., 0], CASES["photos"][1][0][..., 0]
    values = []
    for mode in ("reflect", "constant", "nearest", "mirror", "wrap"):
        def f(x: Array, mode: str = mode) -> Array:
            return ndimage.gaussian_filter(x, sigma=1.5, truncate=3.5, mode=mode)

        ux, uy = f(gt), f(pred)
        vx, vy, vxy = f(gt * gt) - ux * ux, f(pred * pred) - uy * uy, f(gt * pred) - ux * uy
        c1, c2 = 0.01**2, 0.03**2
        s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
        values.append(float(s[5:-5, 5:-5].mean()))
    expected = ref_ssim(gt, pred)
    ours = float(M.ssim(to_tensor([pred[..., None]]), to_tensor([gt[..., None]]))[0])
    assert max(abs(v - expected) for v in values) < 1e-12
    assert abs(ours - expected) < 1e-12


def test_gaussian_window_is_skimage_11_taps() -> None:
    g = M.gaussian_kernel()
    assert g.numel() == 11 == 2 * int(3.5 * 1.5 + 0.5) + 1
    impulse = np.zeros(21)
    impulse[10] = 1
    scipy_taps = ndimage.gaussian_filter1d(impulse, sigma=1.5, truncate=3.5)[5:16]
    np.testing.assert_allclose(g.numpy(), scipy_taps, atol=1e-15)


def test_ssim_is_not_skimage_default() -> None:
    """Guard against the trap: scikit-image's default (7x7 uniform, sample covariance) gives a different number."""
    gts, preds = CASES["photos"]
    default = structural_similarity(gts[1], preds[1], data_range=1, channel_axis=-1)
    ours = float(M.ssim(to_tensor(preds[1:2]), to_tensor(gts[1:2]))[0])
    assert abs(ours - default) > 1e-3
    assert abs(ours - ref_ssim(gts[1], preds[1])) < TOL


def test_separable_filter_paths_agree() -> None:
    x = torch.rand(2, 3, 30, 37, dtype=torch.float64)
    g = M.gaussian_kernel()
    a = M.separable_filter(x, g, g, use_matmul=True)
    b = M.separable_filter(x, g, g, use_matmul=False)
    assert a.shape == b.shape == (2, 3, 20, 27)
    assert (a - b).abs().max() < 1e-14


# ----------------------------------------------------------------------------------------------------------------------
# PSNR, identical images, sharpness


def test_psnr_is_averaged_per_image_not_pooled() -> None:
    gt = photos(32)[:2]
    rng = np.random.default_rng(0)
    preds = [np.clip(gt[0] + rng.normal(0, 0.01, gt[0].shape), 0, 1),
             np.clip(gt[1] + rng.normal(0, 0.2, gt[1].shape), 0, 1)]
    per_image = M.psnr(to_tensor(preds), to_tensor(gt))
    expected = [peak_signal_noise_ratio(g, p, data_range=1) for g, p in zip(gt, preds, strict=True)]
    assert_close(per_image, expected)
    summary = M.summarize({"psnr": per_image})
    pooled = 10 * math.log10(1 / np.mean([np.mean((p - g) ** 2) for g, p in zip(gt, preds, strict=True)]))
    assert abs(summary["psnr_mean"] - np.mean(expected)) < 1e-9
    assert abs(summary["psnr_mean"] - pooled) > 1.0


def test_identical_images() -> None:
    x = to_tensor(photos(32))
    got = M.all_metrics(x, x.clone())
    assert torch.all(got["l1"] == 0) and torch.all(got["l2"] == 0)
    assert torch.all(got["psnr"] == M.PSNR_MAX)
    assert torch.allclose(got["ssim"], torch.ones(3, dtype=torch.float64), atol=1e-12)
    assert torch.all(got["sharpness"] == 1)


def test_psnr_of_single_8bit_level_is_below_cap() -> None:
    gt = torch.zeros(1, 3, 64, 64, dtype=torch.float64)
    pred = gt.clone()
    pred[0, 0, 0, 0] = 1 / 255
    value = float(M.psnr(pred, gt)[0])
    assert value < M.PSNR_MAX
    assert abs(value - 10 * math.log10(3 * 64 * 64 * 255**2)) < 1e-9


def test_sharpness_property() -> None:
    gts = photos(64)
    blurred = [filters.gaussian(g, sigma=1.5, channel_axis=-1) for g in gts]
    rng = np.random.default_rng(0)
    noisy = [np.clip(g + rng.normal(0, 0.1, g.shape), 0, 1) for g in gts]
    gt = to_tensor(gts)
    assert torch.all(M.sharpness(to_tensor(blurred), gt) < 0.9)
    assert torch.all(M.sharpness(gt.clone(), gt) == 1)
    assert torch.all(M.sharpness(to_tensor(noisy), gt) > 1.1)
    more_blur = [filters.gaussian(g, sigma=3, channel_axis=-1) for g in gts]
    assert torch.all(M.sharpness(to_tensor(more_blur), gt) < M.sharpness(to_tensor(blurred), gt))
    flat = torch.full((1, 1, 16, 16), 0.5)
    assert float(M.sharpness(flat, flat)[0]) == 1.0


# ----------------------------------------------------------------------------------------------------------------------
# Masks


def random_masks(n: int, size: int, seed: int) -> torch.Tensor:
    """Irregular boolean (n, 1, size, size) masks."""
    g = torch.Generator().manual_seed(seed)
    return make_masks("region", n, size, overlap=2, generator=g).region


def test_masked_metrics_match_numpy() -> None:
    gts, preds = CASES["photos"]
    mask = random_masks(len(gts), 64, seed=0)
    got = {name: f(to_tensor(preds), to_tensor(gts), mask) for name, f in METRIC_FUNCS.items()}
    for i, (g, p) in enumerate(zip(gts, preds, strict=True)):
        m = mask[i, 0].numpy()
        diff = (p - g)[m]  # (k, 3): every channel of the masked pixels
        mse = float(np.mean(diff**2))
        expected = {
            "l1": float(np.mean(np.abs(diff))) * 100,
            "l2": mse * 100,
            "psnr": 10 * math.log10(1 / mse),
            "ssim": float(ref_ssim_map(g, p)[m[5:-5, 5:-5]].mean()),
            "sharpness": ref_sharpness(g, p, m),
        }
        for name, value in expected.items():
            assert deviation(got[name][i], value) <= TOL, name


def test_shared_mask_broadcasts() -> None:
    gts, preds = CASES["photos"]
    one = random_masks(1, 64, seed=1)
    for f in METRIC_FUNCS.values():
        a = f(to_tensor(preds), to_tensor(gts), one)
        b = f(to_tensor(preds), to_tensor(gts), one.expand(len(gts), 1, 64, 64))
        assert torch.equal(a, b)


def test_full_mask_equals_unmasked() -> None:
    gts, preds = CASES["smooth"]
    full = torch.ones(1, 1, 40, 40, dtype=torch.bool)
    for f in METRIC_FUNCS.values():
        assert torch.allclose(f(to_tensor(preds), to_tensor(gts), full), f(to_tensor(preds), to_tensor(gts)),
                              rtol=1e-12, atol=1e-12)


def test_empty_mask_gives_nan() -> None:
    x = torch.rand(2, 3, 16, 16)
    empty = torch.zeros(2, 1, 16, 16, dtype=torch.bool)
    for f in METRIC_FUNCS.values():
        assert torch.isnan(f(x, x.flip(0), empty)).all()


def test_bad_shapes_raise() -> None:
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match="same"):
        M.l1(x, x[:, :1])
    with pytest.raises(ValueError, match="mask"):
        M.l1(x, x, torch.ones(2, 3, 16, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least 11x11"):
        M.ssim(x[..., :10, :], x[..., :10, :])


# ----------------------------------------------------------------------------------------------------------------------
# Harness: luma, grayscale, regions


def test_luma_keys_match_numpy_bt601() -> None:
    gts, preds = CASES["photos"]
    got = M.score_batch(to_tensor(preds), to_tensor(gts), None, region="image")
    assert set(got) == set(M.METRICS) | {f"luma_{k}" for k in M.METRICS}
    for i, (g, p) in enumerate(zip(gts, preds, strict=True)):
        rgb, y = ref_all(g, p), ref_all(luma(g), luma(p))
        assert abs(float(got["luma_ssim"][i]) - ref_ssim(luma(g)[..., 0], luma(p)[..., 0])) < TOL
        for name in M.METRICS:
            assert deviation(got[name][i], rgb[name]) <= TOL, name
            assert deviation(got[f"luma_{name}"][i], y[name]) <= TOL, f"luma_{name}"


def test_grayscale_prediction_is_scored_against_target_luma() -> None:
    gts = photos(64)
    preds = [luma(p) for p in degrade(gts, seed=3)]  # a grayscale model's outputs
    got = M.score_batch(to_tensor(preds), to_tensor(gts), None, region="image")
    assert set(got) == set(M.METRICS)
    for i, (g, p) in enumerate(zip(gts, preds, strict=True)):
        for name, value in ref_all(luma(g), p).items():
            assert deviation(got[name][i], value) <= TOL, name


def test_single_channel_both_sides() -> None:
    gts, preds = CASES["gray"]
    got = M.score_batch(to_tensor(preds), to_tensor(gts), None, region="image")
    assert set(got) == set(M.METRICS)
    assert_close(got["ssim"], [ref_ssim(g[..., 0], p[..., 0]) for g, p in zip(gts, preds, strict=True)])


def test_region_hole_centre_equals_scoring_the_crop() -> None:
    size = 128
    gts = photos(size)
    preds = degrade(gts, seed=4)
    region = make_masks("center", 1, size, overlap=4).region
    got = M.score_batch(to_tensor(preds), to_tensor(gts), region)
    crop = slice(32, 96)  # the 64x64 centre including the 4 px overlap band
    direct = M.score_batch(to_tensor(preds)[..., crop, crop], to_tensor(gts)[..., crop, crop], None, region="image")
    assert set(got) == set(direct)
    for key in got:
        assert torch.equal(got[key], direct[key]), key
    for i, (g, p) in enumerate(zip(gts, preds, strict=True)):
        for name, value in ref_all(g[crop, crop], p[crop, crop]).items():
            assert deviation(got[name][i], value) <= TOL, name


def test_region_hole_per_image_blocks_equal_their_crops() -> None:
    """Different rectangles per image take the masked path; it must equal scoring each crop."""
    size = 64
    gts = photos(size) + smooth_images(2, size, 3, seed=8)
    preds = degrade(gts, seed=5)
    region = make_masks("block", len(gts), size, overlap=4, generator=torch.Generator().manual_seed(3)).region
    assert not torch.equal(region[0], region[1])
    got = M.score_batch(to_tensor(preds), to_tensor(gts), region)
    for i, (g, p) in enumerate(zip(gts, preds, strict=True)):
        ys, xs = np.nonzero(region[i, 0].numpy())
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        rgb, y = ref_all(g[box], p[box]), ref_all(luma(g)[box], luma(p)[box])
        for name in M.METRICS:
            assert deviation(got[name][i], rgb[name]) <= TOL, name
            assert deviation(got[f"luma_{name}"][i], y[name]) <= TOL


def test_region_hole_irregular_uses_bounding_box_with_mask() -> None:
    size = 64
    gts, preds = CASES["photos"]
    region = random_masks(len(gts), size, seed=6)
    got = M.score_batch(to_tensor(preds), to_tensor(gts), region)
    for i, (g, p) in enumerate(zip(gts, preds, strict=True)):
        m = region[i, 0].numpy()
        ys, xs = np.nonzero(m)
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        gb, pb, mb = g[box], p[box], m[box]
        mse = float(np.mean((pb - gb)[mb] ** 2))
        expected = {
            "l1": float(np.mean(np.abs(pb - gb)[mb])) * 100,
            "l2": mse * 100,
            "psnr": 10 * math.log10(1 / mse),
            "ssim": float(ref_ssim_map(gb, pb)[mb[5:-5, 5:-5]].mean()),
            "sharpness": ref_sharpness(gb, pb, mb),
        }
        for name, value in expected.items():
            assert deviation(got[name][i], value) <= TOL, name


def test_region_image_equals_whole_image() -> None:
    gts, preds = CASES["photos"]
    region = make_masks("center", 1, 64, overlap=4).region
    got = M.score_batch(to_tensor(preds), to_tensor(gts), region, region="image")
    for i, (g, p) in enumerate(zip(gts, preds, strict=True)):
        for name, value in ref_all(g, p).items():
            assert deviation(got[name][i], value) <= TOL, name


def test_composite() -> None:
    target = torch.rand(2, 3, 8, 8)
    pred = torch.rand(2, 3, 8, 8)
    region = make_masks("center", 1, 8, overlap=1).region
    out = M.composite(pred, target, region)
    assert torch.equal(out[..., 2:6, 2:6], pred[..., 2:6, 2:6])
    assert torch.equal(out[..., :2, :], target[..., :2, :])
    gray = M.composite(pred[:, :1], target, region)
    assert gray.shape == (2, 1, 8, 8)
    expected = (target.double() * torch.from_numpy(BT601).view(1, 3, 1, 1)).sum(1, keepdim=True).float()
    assert torch.allclose(gray[..., 0, :], expected[..., 0, :])


def test_score_batch_errors() -> None:
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="region"):
        M.score_batch(x, x, None, region="hole")
    with pytest.raises(ValueError, match="unknown region"):
        M.score_batch(x, x, None, region="everything")


# ----------------------------------------------------------------------------------------------------------------------
# Summaries, descriptions, devices


def test_summarize() -> None:
    values = torch.tensor([1.0, 2.0, 4.0, float("nan")], dtype=torch.float64)
    out = M.summarize({"l1": values, "psnr": torch.tensor([30.0])})
    assert set(out) == {"l1_mean", "l1_std", "psnr_mean", "psnr_std"}
    assert out["l1_mean"] == pytest.approx(7 / 3)
    assert out["l1_std"] == pytest.approx(float(np.std([1, 2, 4], ddof=1)))
    assert out["psnr_mean"] == 30.0 and out["psnr_std"] == 0.0


def test_descriptions_cover_metrics() -> None:
    assert M.METRICS == ("l1", "l2", "psnr", "ssim", "sharpness")
    for table in (M.METRIC_DESCRIPTIONS, M.METRIC_UNITS, M.HIGHER_IS_BETTER):
        assert set(table) == {*M.METRICS, "ms_ssim"}  # ms_ssim: only where five scales fit, so not in METRICS
    assert all("\n" not in d for d in M.METRIC_DESCRIPTIONS.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    gts, preds = CASES["photos"]
    region = random_masks(len(gts), 64, seed=2)
    cpu = M.score_batch(to_tensor(preds).float(), to_tensor(gts).float(), region)
    gpu = M.score_batch(to_tensor(preds).float().cuda(), to_tensor(gts).float().cuda(), region.cuda())
    for key, value in cpu.items():
        assert gpu[key].device.type == "cuda"
        assert torch.allclose(gpu[key].cpu(), value, rtol=1e-9, atol=1e-9), key


# ----------------------------------------------------------------------------------------------------------------------
# Cases found by mutation testing (`nox -s mutation -- cebench/metrics.py`)


def test_region_hole_shared_off_centre_rectangle_equals_its_crop() -> None:
    """A rectangle shared by the batch but neither square nor centred: rows and columns of the crop must not mix."""
    gts, preds = CASES["photos"]
    region = torch.zeros(1, 1, 64, 64, dtype=torch.bool)
    rows, cols = slice(3, 40), slice(17, 62)
    region[..., rows, cols] = True
    got = M.score_batch(to_tensor(preds), to_tensor(gts), region)
    for i, (g, p) in enumerate(zip(gts, preds, strict=True)):
        for name, value in ref_all(g[rows, cols], p[rows, cols]).items():
            assert deviation(got[name][i], value) <= TOL, name


def test_summarize_is_float64_and_handles_two_and_no_values() -> None:
    values = torch.rand(10_001, generator=torch.Generator().manual_seed(0))  # float32 scores
    out = M.summarize({"psnr": values, "two": torch.tensor([1.0, 4.0]), "none": torch.tensor([math.nan, math.nan])})
    reference = values.double().numpy()
    assert out["psnr_mean"] == pytest.approx(float(reference.mean()), rel=1e-12)  # a float32 mean is ~1e-8 off
    assert out["psnr_std"] == pytest.approx(float(reference.std(ddof=1)), rel=1e-12)
    assert out["two_std"] == pytest.approx(float(np.std([1.0, 4.0], ddof=1)))
    assert math.isnan(out["none_mean"]) and math.isnan(out["none_std"])


def test_composite_keeps_the_prediction_dtype() -> None:
    pred, target = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8, dtype=torch.float64)
    region = make_masks("center", 1, 8, overlap=1).region
    assert M.composite(pred, target, region).dtype == torch.float32
    assert M.composite(pred[:, :1], target, region).dtype == torch.float32


def test_masked_metrics_on_non_square_images() -> None:
    """A mask on a 40x56 image: the border crop of the SSIM and Sobel maps must use each side's own length."""
    gts, preds = smooth_images(2, 56, 3, seed=9), degrade(smooth_images(2, 56, 3, seed=9), seed=10)
    gts, preds = [g[8:48] for g in gts], [p[8:48] for p in preds]
    mask = random_masks(2, 56, seed=11)[..., 8:48, :]
    got = M.all_metrics(to_tensor(preds), to_tensor(gts), mask)
    for i, (g, p) in enumerate(zip(gts, preds, strict=True)):
        m = mask[i, 0].numpy()
        mse = float(np.mean((p - g)[m] ** 2))
        expected = {
            "l1": float(np.mean(np.abs(p - g)[m])) * 100,
            "l2": mse * 100,
            "psnr": 10 * math.log10(1 / mse),
            "ssim": float(ref_ssim_map(g, p)[m[5:-5, 5:-5]].mean()),
            "sharpness": ref_sharpness(g, p, m),
        }
        for name, value in expected.items():
            assert deviation(got[name][i], value) <= TOL, name
