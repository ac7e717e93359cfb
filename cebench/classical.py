"""Classical, training-free inpainting on the same test images and holes as the trained models: the references a reader
asks for first.

- `biharmonic`: scikit-image's `restoration.inpaint_biharmonic` on the float [0, 1] image (`channel_axis=-1` for RGB).
- `telea`: OpenCV's `cv2.inpaint(..., flags=cv2.INPAINT_TELEA)` (Telea 2004, fast marching), inpainting radius 3 px.
- `ns`: OpenCV's `cv2.inpaint(..., flags=cv2.INPAINT_NS)` (Bertalmio et al. 2001, Navier-Stokes), radius 3 px.

OpenCV inpaints 8-bit images, so its input is the image rounded to uint8 and its fill is read back / 255. Every method
sees exactly what a model sees: the image with its hole blanked (for the centre mask the overlap band stays visible).
Only hole pixels are replaced; everything else keeps the original float values, so scoring (same harness, same region)
differs from a model's only by what was filled in. Grayscale variants are inpainted on the BT.601 luma image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import cv2
import numpy as np
import torch
from skimage.restoration import inpaint_biharmonic

from cebench.data.source import image_batch
from cebench.evaluate import eval_masks
from cebench.masks import to_luma
from cebench.metrics import score_batch, summarize
from cebench.task import Task

OPENCV_RADIUS: Final = 3
CLASSICAL: Final[dict[str, str]] = {
    "biharmonic": "scikit-image inpaint_biharmonic (no training)",
    "telea": "OpenCV inpaint, Telea fast marching, radius 3 (no training)",
    "ns": "OpenCV inpaint, Navier-Stokes, radius 3 (no training)",
}
# Hole-region keys kept for every reference in a results row (the `image_*` ones are left to the model itself).
REFERENCE_KEYS: Final = ("l1", "l2", "psnr", "ssim", "sharpness")


def _biharmonic(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    return inpaint_biharmonic(image, hole, channel_axis=-1 if image.ndim == 3 else None)


def _opencv(flag: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def fill(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        # Luma can land on an exact half (e.g. 127.5); the last bit of a float sum, which depends on summation order
        # (BLAS, threads), must not decide which way it rounds: snap to 1e-6 first, then round half to even.
        u8 = np.clip(np.rint(np.round(image * 255.0, 6)), 0, 255).astype(np.uint8)
        return cv2.inpaint(u8, hole.astype(np.uint8), OPENCV_RADIUS, flag).astype(np.float64) / 255.0

    return fill


_METHODS: Final[dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]] = {
    "biharmonic": _biharmonic, "telea": _opencv(cv2.INPAINT_TELEA), "ns": _opencv(cv2.INPAINT_NS),
}


def inpaint(method: str, images: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """Fill the holes of `images` (N, C, H, W) in [0, 1], C = 1 or 3, with a classical method.

    hole: bool (N | 1, 1, H, W), True where the pixel is unknown. Returns float64 (N, C, H, W) on the images' device:
    the method's values inside the hole, the input's values everywhere else."""
    if method not in _METHODS:
        raise ValueError(f"unknown classical method {method!r}; valid: {', '.join(_METHODS)}")
    fill = _METHODS[method]
    x = images.detach().to("cpu", torch.float64)
    holes = hole.detach().to("cpu", torch.bool).expand(len(x), 1, *x.shape[-2:])
    out = x.clone()
    for i in range(len(x)):
        mask = holes[i, 0].numpy()
        if not mask.any():
            continue
        image = x[i].permute(1, 2, 0).numpy()
        image = image[..., 0] if image.shape[-1] == 1 else image
        filled = np.asarray(fill(image, mask), dtype=np.float64).reshape(*mask.shape, -1)
        out[i] = torch.where(holes[i], torch.from_numpy(filled).permute(2, 0, 1), x[i])
    return out.to(images.device)


@torch.no_grad()
def classical_scores(method: str, task: Task, images: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Per-image scores of `method` on a uint8 split, with the evaluation masks and harness of `cebench.evaluate`."""
    v = task.variant
    out: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(images), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(images)), device=images.device)
        # Back to the exact 8-bit values, in float64: OpenCV rounds its input to uint8, and float32 luma could round
        # differently from the luma a reader recomputes from the image files.
        crops = image_batch(images, idx, v.image_size, gray=False, train=False, generator=None)
        real01 = ((crops + 1) * 127.5).round().double() / 255
        seen = real01 if v.channels == "rgb" else to_luma(real01)
        masks = eval_masks(task, len(idx), images.device, offset=start)
        pred = inpaint(method, seen, masks.hole)
        for k, s in score_batch(pred, real01, masks.region, region="hole").items():
            out.setdefault(k, []).append(s.float())
    return {k: torch.cat(parts) for k, parts in out.items()}


def reference_means(name: str, scores: dict[str, torch.Tensor]) -> dict[str, float]:
    """`<name>_<key>_mean` results columns of a reference's per-image hole scores (plain and `luma_` keys)."""
    keys = [k for k in scores if k.removeprefix("luma_") in REFERENCE_KEYS]
    summary = summarize({k: scores[k] for k in keys})
    return {f"{name}_{k}_mean": summary[f"{k}_mean"] for k in keys}


def classical_references(task: Task, images: torch.Tensor) -> dict[str, float]:
    """Results columns of every classical method on `images` (see `reference_means`)."""
    out: dict[str, float] = {}
    for method in CLASSICAL:
        out.update(reference_means(method, classical_scores(method, task, images)))
    return out
