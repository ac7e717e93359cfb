"""Inpainting metrics as pure, batched torch functions (in the manner of torchmetrics' functional modules).

Conventions (every number cebench reports follows them):

- Inputs are float tensors in [0, 1] of shape (N, C, H, W), C = 1 or 3, on any device. Every function returns one value
  per image, shape (N,), computed for the whole batch at once (no Python loop over images, no host sync; `score_batch`
  syncs once per batch to decide whether the region is one shared rectangle). Statistics are accumulated in float64
  (float32 on MPS, which has no float64), so results match scikit-image to ~1e-15 whatever the input precision;
  returned values are in that working dtype. (Computed in float32, SSIM would still be within ~6e-6.)
- Scores are per image, then averaged over the test set (`summarize`). In particular the reported PSNR is the mean of
  per-image PSNRs, which is not the PSNR of the pooled MSE.
- `l1`: mean |pred - target| x 100, in % of the [0, 1] range. `l2`: mean (pred - target)^2 x 100, in %.
  Means run over pixels and channels.
- `psnr`: 10 log10(1 / MSE) in dB (data range 1). Identical images (MSE = 0) would give +inf; the MSE is floored at
  1e-10, so PSNR is capped at `PSNR_MAX` = 100 dB and test-set means stay finite. Only near-identical 8-bit images hit
  the cap: one value off by one level in 64x64x3 values gives 89 dB; the cap is reached below one such value in ~154k.
- `ssim`: Wang et al. (2004) SSIM with an 11x11 Gaussian window (sigma 1.5, truncated at 3.5 sigma), K1 = 0.01,
  K2 = 0.03, data range 1, population (not sample) covariances, computed per channel and averaged over channels. The
  SSIM map is only evaluated where the whole window lies inside the image, i.e. a 5 px border is cropped before the
  mean, so the filter's border mode never matters. This equals
  `skimage.metrics.structural_similarity(target, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=1, channel_axis=-1)` (not scikit-image's default 7x7 uniform window with sample covariance).
- `sharpness`: a weight-free measure of blur. The gradient magnitude sqrt(gx^2 + gy^2) of each channel is taken with
  3x3 Sobel filters (divided by 8, i.e. intensity change per pixel) where the whole 3x3 stencil lies inside the image;
  sharpness = mean magnitude of the prediction / mean magnitude of the target over the scored pixels, per image.
  1 means as sharp as the truth, < 1 blurrier, > 1 noisier or over-sharpened. A tiny epsilon (1e-12) in numerator and
  denominator keeps it finite; two flat images score 1.
- Optional `mask`: boolean (N, 1, H, W) (or (1, 1, H, W), broadcast over the batch and over channels). L1/L2/PSNR
  average over masked pixels; SSIM and sharpness restrict the mean of their border-cropped maps (5 px for SSIM, 1 px
  for sharpness) to masked positions. An image with no scored pixel gets NaN.
- `ms_ssim`: multi-scale SSIM (Wang, Simoncelli, Bovik 2003), five scales weighted 0.0448, 0.2856, 0.3001, 0.2363,
  0.1333, the SSIM window and constants above, 2x2 average pooling between scales. The window must fit the fifth
  scale, so it is only computed on a rectangle (the centre region, or the whole image) of `MS_SSIM_MIN_SIDE` = 176 px
  or more; elsewhere the key is absent rather than filled with a stand-in.
- Luma: BT.601 (`cebench.masks.to_luma`), computed in float from the [0, 1] RGB values.

`score_batch` is the harness used by training-time evaluation and by `cebench score`:

- region "hole" (the default): only the scored region (`Masks.region`: for the centre mask the 64x64 centre of a
  128 image, including the 4 px overlap band). A rectangle shared by the whole batch (the centre mask) is cropped and
  the crop is scored, which equals scikit-image on the crop. Any other region (random blocks, irregular masks) is scored
  on the bounding box of each image's region with the region as mask: L1/L2/PSNR over region pixels; SSIM and
  sharpness over region pixels lying at least 5 px (SSIM) or 1 px (sharpness) inside the bounding box. For a rectangle
  this is exactly the score of its crop.
- region "image": the whole image (the prediction composited into the context, see `composite`).
- RGB predictions get the plain keys (scored in RGB) plus `luma_*` keys (both sides converted to luma). A 1-channel
  prediction (grayscale model) is scored against the luma of the target, plain keys only.
"""

from __future__ import annotations

import functools
import math
from typing import Final

import torch
import torch.nn.functional as F
from torch import Tensor

from cebench.masks import to_luma

METRICS: Final = ("l1", "l2", "psnr", "ssim", "sharpness")
REGIONS: Final = ("hole", "image")

METRIC_DESCRIPTIONS: Final[dict[str, str]] = {
    "l1": "mean absolute error over the scored region, % of the [0, 1] range (lower is better)",
    "l2": "mean squared error over the scored region, % of the [0, 1] range (lower is better)",
    "psnr": "peak signal-to-noise ratio 10*log10(1/MSE), dB, per image then averaged, capped at 100 (higher is better)",
    "ssim": "structural similarity, 11x11 Gaussian window sigma 1.5, 5 px border cropped, unitless in [-1, 1] "
    "(higher is better)",
    "sharpness": "mean Sobel gradient magnitude of prediction / of ground truth in the region, ratio "
    "(1 = as sharp, < 1 blurrier)",
    "ms_ssim": "multi-scale SSIM, 5 scales with the standard weights; only for a rectangular scored region of 176 px "
    "or more (higher is better)",
}
METRIC_UNITS: Final[dict[str, str]] = {"l1": "%", "l2": "%", "psnr": "dB", "ssim": "", "sharpness": "ratio",
                                       "ms_ssim": ""}
HIGHER_IS_BETTER: Final[dict[str, bool | None]] = {
    "l1": False,
    "l2": False,
    "psnr": True,
    "ssim": True,
    "sharpness": None,  # best at 1
    "ms_ssim": True,
}

PSNR_MAX: Final = 100.0
_MSE_FLOOR: Final = 10.0 ** (-PSNR_MAX / 10.0)
SSIM_SIGMA: Final = 1.5
SSIM_RADIUS: Final = int(3.5 * SSIM_SIGMA + 0.5)  # 5: scipy/scikit-image truncation at 3.5 sigma -> 11 taps
SSIM_K1: Final = 0.01
SSIM_K2: Final = 0.03
SOBEL_RADIUS: Final = 1
_SHARPNESS_EPS: Final = 1e-12


# ----------------------------------------------------------------------------------------------------------------------
# Helpers


def _work_dtype(device: torch.device) -> torch.dtype:
    """float64 everywhere but MPS (which lacks it)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _prepare(pred: Tensor, target: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """Check shapes and cast to the working dtype; the mask becomes a float (N|1, 1, H, W) tensor of 0/1."""
    if pred.ndim != 4 or pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same (N, C, H, W) shape, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    dtype = _work_dtype(pred.device)
    m = None
    if mask is not None:
        n, _, h, w = pred.shape
        if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[2:] != (h, w) or mask.shape[0] not in (1, n):
            raise ValueError(f"mask must be (N, 1, H, W) or (1, 1, H, W) matching {tuple(pred.shape)}, "
                             f"got {tuple(mask.shape)}")
        m = mask.to(device=pred.device, dtype=dtype)
    return pred.to(dtype), target.to(dtype), m


def _crop(x: Tensor, r: int) -> Tensor:
    """Drop an `r` px border of the last two dimensions."""
    return x[..., r : x.shape[-2] - r, r : x.shape[-1] - r] if r > 0 else x


def _mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Per-image mean of (N, C, h, w) values over channels and (masked) pixels; NaN for an empty mask."""
    if mask is None:
        return values.mean(dim=(1, 2, 3))
    n, c = values.shape[:2]
    weights = mask.expand(n, 1, *values.shape[2:])
    return (values * weights).sum(dim=(1, 2, 3)) / (weights.sum(dim=(1, 2, 3)) * c)


_MATMUL_MAX_SIDE: Final = 1024  # banded matmuls beat float64 conv2d on CPU (5-7x at 64-256 px); conv2d above


def _band(kernel: Tensor, n: int) -> Tensor:
    """(n - k + 1, n) matrix whose rows hold `kernel` shifted by one: `band @ v` is the 'valid' correlation of v."""
    k = kernel.numel()
    rows = n - k + 1
    cols = torch.arange(rows, device=kernel.device).view(-1, 1) + torch.arange(k, device=kernel.device).view(1, -1)
    band = torch.zeros(rows, n, dtype=kernel.dtype, device=kernel.device)
    return band.scatter_(1, cols, kernel.view(1, -1).expand(rows, k))


def separable_filter(x: Tensor, kernel_h: Tensor, kernel_w: Tensor, use_matmul: bool | None = None) -> Tensor:
    """'Valid' correlation of every channel of (N, C, H, W) with a column kernel then a row kernel (no padding:
    output (N, C, H - kh + 1, W - kw + 1)). Banded matmuls for small images, depthwise conv2d for large ones."""
    n, c, h, w = x.shape
    if use_matmul is None:
        use_matmul = max(h, w) <= _MATMUL_MAX_SIDE
    if use_matmul:
        return _band(kernel_h, h) @ x @ _band(kernel_w, w).T
    flat = x.reshape(n * c, 1, h, w)
    flat = F.conv2d(flat, kernel_h.view(1, 1, -1, 1))
    flat = F.conv2d(flat, kernel_w.view(1, 1, 1, -1))
    return flat.reshape(n, c, flat.shape[-2], flat.shape[-1])


def gaussian_kernel(sigma: float = SSIM_SIGMA, radius: int = SSIM_RADIUS, *, dtype: torch.dtype = torch.float64,
                    device: torch.device | str = "cpu") -> Tensor:
    """Normalised 1-D Gaussian taps exp(-x^2 / (2 sigma^2)), x in [-radius, radius], as scipy.ndimage builds them."""
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


# ----------------------------------------------------------------------------------------------------------------------
# Metrics


def l1(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean absolute error x 100 (% of the [0, 1] range) per image, over channels and (masked) pixels. Shape (N,)."""
    p, t, m = _prepare(pred, target, mask)
    return _mean((p - t).abs(), m) * 100.0


def l2(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error x 100 (% of the [0, 1] range) per image, over channels and (masked) pixels. Shape (N,)."""
    p, t, m = _prepare(pred, target, mask)
    return _mean((p - t) ** 2, m) * 100.0


def psnr(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """10 log10(1 / MSE) in dB per image (data range 1); MSE floored so identical images give `PSNR_MAX`. Shape (N,)."""
    p, t, m = _prepare(pred, target, mask)
    mse = _mean((p - t) ** 2, m)
    return -10.0 * torch.log10(mse.clamp(min=_MSE_FLOOR))


def ssim_map(pred: Tensor, target: Tensor) -> Tensor:
    """Per-pixel SSIM (N, C, H - 10, W - 10): only positions whose whole 11x11 window lies inside the image."""
    c, h, w = pred.shape[1:]
    if min(h, w) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"SSIM needs images of at least {2 * SSIM_RADIUS + 1}x{2 * SSIM_RADIUS + 1} px, got {h}x{w}")
    n = pred.shape[0]
    g = gaussian_kernel(dtype=pred.dtype, device=pred.device)
    # The five moments are written into one buffer and filtered in one call; the map is then built in place (the
    # elementwise passes over float64 maps, not the filter, dominate on CPU: 1.8x faster than with temporaries).
    moments = torch.empty(n, 5, c, h, w, dtype=pred.dtype, device=pred.device)
    moments[:, 0], moments[:, 1] = pred, target
    torch.mul(pred, pred, out=moments[:, 2])
    torch.mul(target, target, out=moments[:, 3])
    torch.mul(pred, target, out=moments[:, 4])
    stats = separable_filter(moments.view(n, 5 * c, h, w), g, g)
    mu_x, mu_y, xx, yy, xy = stats.view(n, 5, c, *stats.shape[-2:]).unbind(1)
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # data range 1
    mu_xy = mu_x * mu_y
    num = xy.sub_(mu_xy).mul_(2).add_(c2).mul_(mu_xy.mul_(2).add_(c1))  # (2 cov + C2)(2 mu_x mu_y + C1)
    squares = mu_x.square_().add_(mu_y.square_())  # mu_x^2 + mu_y^2
    den = xx.add_(yy).sub_(squares).add_(c2).mul_(squares.add_(c1))  # (var_x + var_y + C2)(mu_x^2 + mu_y^2 + C1)
    return num.div_(den)


def ssim(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean SSIM per image over channels and the border-cropped map (optionally restricted to `mask`). Shape (N,)."""
    p, t, m = _prepare(pred, target, mask)
    return _mean(ssim_map(p, t), None if m is None else _crop(m, SSIM_RADIUS))


MS_SSIM_WEIGHTS: Final = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang, Simoncelli, Bovik 2003, five scales
MS_SSIM_MIN_SIDE: Final = (2 * SSIM_RADIUS + 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1)  # the window fits the 5th scale


def _ssim_and_cs(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Per image and channel (N, C): the mean SSIM and the mean contrast-structure term over the valid map."""
    g = gaussian_kernel(dtype=x.dtype, device=x.device)
    mu_x, mu_y = separable_filter(x, g, g), separable_filter(y, g, g)
    var_x = separable_filter(x * x, g, g) - mu_x**2
    var_y = separable_filter(y * y, g, g) - mu_y**2
    cov = separable_filter(x * y, g, g) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (luminance * cs).mean(dim=(-2, -1)), cs.mean(dim=(-2, -1))


def ms_ssim(pred: Tensor, target: Tensor) -> Tensor:
    """Multi-scale SSIM per image (Wang, Simoncelli, Bovik 2003), shape (N,): the contrast-structure terms of scales
    1-4 and the full SSIM of scale 5, with the standard weights, the SSIM window and constants above; 2x2 average
    pooling between scales (an odd last row or column is dropped); each term clamped at 0 before its power (as
    pytorch-msssim and torchmetrics do); per channel, then averaged. Needs images of `MS_SSIM_MIN_SIDE` px or more."""
    p, t, _ = _prepare(pred, target, None)
    if min(p.shape[-2:]) < MS_SSIM_MIN_SIDE:
        raise ValueError(f"MS-SSIM needs images of at least {MS_SSIM_MIN_SIDE}x{MS_SSIM_MIN_SIDE} px (the 11x11 window "
                         f"at the fifth scale), got {p.shape[-2]}x{p.shape[-1]}")
    terms = []
    for level in range(len(MS_SSIM_WEIGHTS)):
        whole, cs = _ssim_and_cs(p, t)
        if level == len(MS_SSIM_WEIGHTS) - 1:
            terms.append(whole.clamp(min=0))
        else:
            terms.append(cs.clamp(min=0))
            h, w = p.shape[-2] // 2 * 2, p.shape[-1] // 2 * 2
            p, t = F.avg_pool2d(p[..., :h, :w], 2), F.avg_pool2d(t[..., :h, :w], 2)
    weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=p.dtype, device=p.device).view(-1, 1, 1)
    return torch.prod(torch.stack(terms) ** weights, dim=0).mean(dim=1)


@functools.cache
def _sobel_taps(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """Sobel's smoothing and difference taps, made once per dtype and device: building a tensor on a GPU from Python
    numbers is a blocking host-to-device copy, and scoring calls this for every batch."""
    smooth = torch.tensor([1.0, 2.0, 1.0], dtype=dtype, device=device) / 4.0
    return smooth, torch.tensor([-1.0, 0.0, 1.0], dtype=dtype, device=device) / 2.0


def gradient_magnitude(images: Tensor) -> Tensor:
    """Sobel gradient magnitude / 8 per channel, (N, C, H - 2, W - 2): positions whose 3x3 stencil is inside."""
    smooth, diff = _sobel_taps(images.dtype, images.device)
    gx = separable_filter(images, smooth, diff)
    gy = separable_filter(images, diff, smooth)
    return torch.hypot(gx, gy)


def sharpness(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean gradient magnitude of `pred` / that of `target` per image (1 = as sharp, < 1 blurrier). Shape (N,)."""
    p, t, m = _prepare(pred, target, mask)
    cm = None if m is None else _crop(m, SOBEL_RADIUS)
    return (_mean(gradient_magnitude(p), cm) + _SHARPNESS_EPS) / (_mean(gradient_magnitude(t), cm) + _SHARPNESS_EPS)


def all_metrics(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
    """Every metric of `METRICS` on the same inputs, keyed by name."""
    return {
        "l1": l1(pred, target, mask),
        "l2": l2(pred, target, mask),
        "psnr": psnr(pred, target, mask),
        "ssim": ssim(pred, target, mask),
        "sharpness": sharpness(pred, target, mask),
    }


# ----------------------------------------------------------------------------------------------------------------------
# Harness


def composite(pred: Tensor, target: Tensor, region: Tensor) -> Tensor:
    """The prediction inside `region` (bool (N|1, 1, H, W)), the ground truth (its luma for a 1-channel prediction)
    elsewhere."""
    context = to_luma(target) if pred.shape[1] == 1 else target
    return torch.where(region.to(pred.device), pred, context.to(pred.dtype))


def bounding_box_mask(region: Tensor, inset: int = 0) -> Tensor:
    """Boolean (N, 1, H, W): each image's bounding box of `region`, shrunk by `inset` px on every side.

    All True for an empty region (intersecting it with the region is then still empty)."""
    h, w = region.shape[-2:]
    rows = region.any(dim=-1).to(torch.uint8)  # (N, 1, H)
    cols = region.any(dim=-2).to(torch.uint8)  # (N, 1, W)
    top, left = rows.argmax(dim=-1), cols.argmax(dim=-1)  # first True (argmax returns the first maximum)
    bottom, right = h - 1 - rows.flip(-1).argmax(dim=-1), w - 1 - cols.flip(-1).argmax(dim=-1)
    ys = torch.arange(h, device=region.device).view(1, 1, h, 1)
    xs = torch.arange(w, device=region.device).view(1, 1, 1, w)
    in_rows = (ys >= (top + inset).view(-1, 1, 1, 1)) & (ys <= (bottom - inset).view(-1, 1, 1, 1))
    in_cols = (xs >= (left + inset).view(-1, 1, 1, 1)) & (xs <= (right - inset).view(-1, 1, 1, 1))
    return in_rows & in_cols


def _shared_box(region: Tensor) -> tuple[int, int, int, int] | None:
    """(top, left, height, width) when `region` is one non-empty rectangle shared by every image, else None.

    This is the harness's only host sync (one per batch)."""
    first = region[:1]
    box = bounding_box_mask(first)
    if not bool(((region == first).all() & (box == first).all() & first.any()).item()):
        return None
    ys = first[0, 0].any(dim=1).nonzero().flatten()
    xs = first[0, 0].any(dim=0).nonzero().flatten()
    top, left = int(ys[0]), int(xs[0])
    return top, left, int(ys[-1]) - top + 1, int(xs[-1]) - left + 1


def _region_metrics(pred: Tensor, target: Tensor, region: Tensor | None,
                    box: tuple[int, int, int, int] | None) -> dict[str, Tensor]:
    """Metrics of one channel set over the region (see the module docstring): the crop `box` when given, else masked
    means over the region, else (region None) whole images."""
    if region is None or box is not None:
        top, left, h, w = box or (0, 0, *pred.shape[-2:])
        crop_p, crop_t = pred[..., top : top + h, left : left + w], target[..., top : top + h, left : left + w]
        # MS-SSIM only where the scored rectangle is large enough for five scales; elsewhere the key is absent.
        extra = {"ms_ssim": ms_ssim(crop_p, crop_t)} if min(h, w) >= MS_SSIM_MIN_SIDE else {}
        return all_metrics(crop_p, crop_t) | extra
    ssim_mask = region & bounding_box_mask(region, SSIM_RADIUS)
    sharp_mask = region & bounding_box_mask(region, SOBEL_RADIUS)
    return {
        "l1": l1(pred, target, region),
        "l2": l2(pred, target, region),
        "psnr": psnr(pred, target, region),
        "ssim": ssim(pred, target, ssim_mask),
        "sharpness": sharpness(pred, target, sharp_mask),
    }


def score_batch(pred: Tensor, target: Tensor, masks_region: Tensor | None, region: str = "hole") -> dict[str, Tensor]:
    """Per-image scores of composited predictions against the ground truth.

    pred: (N, C, H, W) in [0, 1], C = 3 (colour model) or 1 (grayscale model), already composited into the context.
    target: (N, 3 or 1, H, W) in [0, 1]. masks_region: bool (N | 1, 1, H, W) scored region (`Masks.region`); required
    for region "hole", ignored for region "image". Returns (N,) tensors keyed `l1 l2 psnr ssim sharpness`, plus
    `luma_<metric>` for RGB predictions; a 1-channel prediction is scored against the luma of the target.
    """
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; valid: {', '.join(REGIONS)}")
    if pred.shape[1] == 1 and target.shape[1] == 3:
        target = to_luma(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} do not match")
    if region == "hole" and masks_region is None:
        raise ValueError("region 'hole' needs masks_region")
    dtype = _work_dtype(pred.device)
    pred, target = pred.to(dtype), target.to(device=pred.device, dtype=dtype)
    scored = masks_region.to(device=pred.device, dtype=torch.bool) if region == "hole" and masks_region is not None \
        else None
    box = None if scored is None else _shared_box(scored)
    out = _region_metrics(pred, target, scored, box)
    if pred.shape[1] == 3:
        luma = _region_metrics(to_luma(pred), to_luma(target), scored, box)
        out.update({f"luma_{k}": v for k, v in luma.items()})
    return out


def summarize(per_image: dict[str, Tensor]) -> dict[str, float]:
    """`<key>_mean` and `<key>_std` over images for every key. The std is the sample std (ddof=1), 0.0 for a single
    image; NaN entries (images with no scored pixel) are left out of both."""
    out: dict[str, float] = {}
    for key, values in per_image.items():
        v = values.detach().to("cpu", torch.float64).flatten()
        v = v[~torch.isnan(v)]
        n = v.numel()
        out[f"{key}_mean"] = float(v.mean()) if n else math.nan
        out[f"{key}_std"] = float(v.std(correction=1)) if n > 1 else (0.0 if n == 1 else math.nan)
    return out
