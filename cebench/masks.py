"""Hole masks and fills, generated in batches on the training device.

Every mask kind yields two boolean maps of shape (N, 1, S, S):
- `hole`: the pixels blanked in the input (what the network cannot see);
- `region`: the hole grown by `overlap` px on every side: where the loss is taken and metrics are scored. For the centre
  mask this is Pathak's setup: a 64x64 centre of a 128 image whose inner 56x56 is blanked, the 4 px band kept visible and
  weighted 10x in the loss (`overlapPred`, `wtl2` in his `train.lua`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MASK_KINDS = ("center", "block", "region")
FILL_KINDS = ("mean", "zero", "noise")

# Pathak's fill colour: the ImageNet-ish mean (117, 104, 123) / 255, mapped to [-1, 1].
MEAN_RGB = (117 / 255 * 2 - 1, 104 / 255 * 2 - 1, 123 / 255 * 2 - 1)
# ITU-R BT.601 luma weights, also used to make grayscale variants and luma metrics.
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Masks:
    hole: torch.Tensor  # bool (N, 1, S, S): blanked pixels
    region: torch.Tensor  # bool (N, 1, S, S): hole + overlap band; the loss and metric region

    def loss_weights(self, overlap_weight: float) -> torch.Tensor:
        """1 inside the hole, `overlap_weight` on the band, 0 outside the region."""
        band = self.region & ~self.hole
        return self.hole.float() + overlap_weight * band.float()

    def __getitem__(self, index: slice) -> Masks:
        return Masks(self.hole[index], self.region[index])


def center_box(size: int) -> tuple[int, int]:
    """(top, side) of the centre region: a square of half the image side, as in Pathak's 64-of-128 setup."""
    side = size // 2
    return (size - side) // 2, side


def grow(mask: torch.Tensor, px: int) -> torch.Tensor:
    """Dilate a boolean (N, 1, S, S) mask by `px` pixels with a square structuring element."""
    if px <= 0:
        return mask
    return F.max_pool2d(mask.float(), kernel_size=2 * px + 1, stride=1, padding=px) > 0.5


MaskDraws = tuple[torch.Tensor, ...]  # the uniform draws a batch of masks is made from (none for centre masks)


def mask_draws(kind: str, n: int, size: int, generator: torch.Generator | None = None) -> MaskDraws:
    """The random part of `n` masks of `kind`, drawn from `generator` on its device: what `make_masks` draws."""
    device = generator.device if generator is not None else torch.device("cpu")
    if kind == "block":
        return (torch.rand(n, 4, generator=generator, device=device),)
    if kind == "region":
        low = max(4, round(size * 0.06))  # Pathak's `res = 0.06`
        return (torch.rand(n, 1, low, low, generator=generator, device=device),
                torch.rand(n, generator=generator, device=device))
    if kind == "center":
        return ()
    raise ValueError(f"unknown mask kind {kind!r}; valid: {', '.join(MASK_KINDS)}")


def make_masks(kind: str, n: int, size: int, overlap: int, generator: torch.Generator | None = None,
               draws: MaskDraws | None = None, device: torch.device | None = None) -> Masks:
    """Draw `n` masks of `kind` for square images of side `size`, on the generator's device; or make them on `device`
    from `draws` made beforehand by `mask_draws`, with the same effect (what a compiled training step does: it cannot
    take a generator)."""
    if draws is None:
        draws = mask_draws(kind, n, size, generator)
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    if kind == "center":
        top, side = center_box(size)
        hole = torch.zeros(n, 1, size, size, dtype=torch.bool, device=device)
        hole[:, :, top + overlap : top + side - overlap, top + overlap : top + side - overlap] = True
        if side > 2 * overlap:  # the region is the centre square: set it, rather than dilate (a third of a CPU step)
            region = torch.zeros_like(hole)
            region[:, :, top : top + side, top : top + side] = True
            return Masks(hole=hole, region=region)
    elif kind == "block":
        hole = _random_blocks(n, size, overlap, draws[0])
    elif kind == "region":
        hole = _random_regions(n, size, draws[0], draws[1])
    else:
        raise ValueError(f"unknown mask kind {kind!r}; valid: {', '.join(MASK_KINDS)}")
    return Masks(hole=hole, region=grow(hole, overlap))


def _random_blocks(n: int, size: int, overlap: int, u: torch.Tensor) -> torch.Tensor:
    """One rectangle per image, sides between a quarter and a half of the image, region kept inside the image; `u` holds
    four uniform draws per image."""
    lo, hi = size // 4, size // 2
    device = u.device
    h = (lo + u[:, 0] * (hi - lo + 1)).long().clamp(max=hi) - 2 * overlap
    w = (lo + u[:, 1] * (hi - lo + 1)).long().clamp(max=hi) - 2 * overlap
    top = overlap + (u[:, 2] * (size - 2 * overlap - h + 1)).long()
    left = overlap + (u[:, 3] * (size - 2 * overlap - w + 1)).long()
    ys = torch.arange(size, device=device).view(1, size, 1)
    xs = torch.arange(size, device=device).view(1, 1, size)
    rows = (ys >= top.view(-1, 1, 1)) & (ys < (top + h).view(-1, 1, 1))
    cols = (xs >= left.view(-1, 1, 1)) & (xs < (left + w).view(-1, 1, 1))
    return (rows & cols).unsqueeze(1)


def _random_regions(n: int, size: int, noise: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Pathak's random-region masks: low-resolution noise, bicubic-upsampled, thresholded to cover 20-30% of the image
    (`u`: one uniform draw per image for the coverage)."""
    smooth = F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False).flatten(1)
    coverage = 0.2 + 0.1 * u
    # Threshold at the per-image quantile so the blanked fraction is exactly the drawn coverage.
    k = (coverage * size * size).long().clamp(min=1)
    ranked = smooth.sort(dim=1, descending=True).values
    threshold = ranked.gather(1, (k - 1).unsqueeze(1))
    return (smooth >= threshold).view(n, 1, size, size)


def fill_holes(images: torch.Tensor, hole: torch.Tensor, fill: str, generator: torch.Generator | None = None,
               noise: torch.Tensor | None = None) -> torch.Tensor:
    """Blank the hole of images in [-1, 1] (N, C, S, S) with Pathak's mean colour, zero, or uniform noise (drawn from
    `generator`, or `noise`: uniform [0, 1) draws of the images' shape made beforehand)."""
    c = images.shape[1]
    if fill == "mean":
        value = _mean_colour(images.device, images.dtype, c).expand_as(images)
    elif fill == "zero":
        value = torch.zeros_like(images)
    elif fill == "noise":
        if noise is None:
            noise = torch.rand(images.shape, generator=generator, device=images.device, dtype=images.dtype)
        value = noise * 2 - 1
    else:
        raise ValueError(f"unknown fill {fill!r}; valid: {', '.join(FILL_KINDS)}")
    return torch.where(hole, value, images)


def white_pixels(image: torch.Tensor) -> torch.Tensor:
    """The marked pixels of a mask image (C, H, W) in [0, 255], bool (H, W): gray level (BT.601 luma) above 127. One
    rule for every mask a user draws (`cebench score --mask`, `cebench inpaint --mask`)."""
    return (to_luma(image.unsqueeze(0).double()) > 127.5)[0, 0]


def to_luma(images: torch.Tensor) -> torch.Tensor:
    """RGB (N, 3, H, W) -> luma (N, 1, H, W) with BT.601 weights; 1-channel input is returned unchanged."""
    if images.shape[1] == 1:
        return images
    return (images * _constant(LUMA, images.device, images.dtype)).sum(1, keepdim=True)


def _constant(values: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A (1, C, 1, 1) constant made once per device: building it every step would copy host to device (a sync on CUDA).
    In a compiled graph it is a constant of the graph, nothing to cache."""
    if torch.compiler.is_compiling():
        return torch.tensor(values, dtype=dtype, device=device).view(1, -1, 1, 1)
    return _cached_constant(values, device, dtype)


@functools.cache
def _cached_constant(values: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype).view(1, -1, 1, 1).to(device)


def _mean_colour(device: torch.device, dtype: torch.dtype, channels: int) -> torch.Tensor:
    if channels == 3:
        return _constant(MEAN_RGB, device, dtype)
    return _constant((sum(m * w for m, w in zip(MEAN_RGB, LUMA, strict=True)),), device, dtype)
