"""A user's photo as `cebench inpaint` sees it: its own channels (gray or colour) and bit depth, read and written back
unchanged, plus the colour helpers a gray model needs on a colour photo (BT.601 YCbCr, chroma interpolated into a hole).

`imageio.read_image` turns every file into 8-bit RGB, which suits training; a photo's owner wants back a file like the one
they gave: a gray photo stays one channel, a 16-bit gray PNG keeps its 16 bits (so pixels outside the hole are returned
exactly), 8-bit files stay 8-bit. 16-bit colour PNGs are reduced to 8 bits by Pillow when it decodes them, as in
`imageio.read_image`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from cebench.imageio import WIDE_GRAY_MODES, atomic_path
from cebench.masks import LUMA

GRAY_MODES = ("1", "L", "LA", "La")  # 8-bit (or 1-bit) single-channel modes, alpha dropped


@dataclass(frozen=True)
class Photo:
    pixels: np.ndarray  # uint8 or uint16 (16-bit gray) (C, H, W), C = 1 (gray) or 3 (colour)

    @property
    def gray(self) -> bool:
        return self.pixels.shape[0] == 1

    @property
    def max_value(self) -> int:
        return int(np.iinfo(self.pixels.dtype).max)


# EXIF orientations that turn the stored pixels a quarter turn (cameras store portraits sideways and say so here).
QUARTER_TURNS = (5, 6, 7, 8)
ORIENTATION = 0x0112


def photo_size(path: Path) -> tuple[int, int] | None:
    """(height, width) as a viewer shows the photo, from the file's header without decoding it; None when it is not an
    image."""
    try:
        with Image.open(path) as im:
            turned = im.getexif().get(ORIENTATION) in QUARTER_TURNS
            return (im.width, im.height) if turned else (im.height, im.width)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return None


def read_photo(path: Path) -> Photo | None:
    """The photo at its own channels and depth, upright as a viewer shows it (EXIF orientation applied, so --hole
    coordinates and the written file match what the user sees); None when the file is unreadable or truncated."""
    try:
        with Image.open(path) as opened:
            opened.load()  # decode fully here so a truncated file fails now
            im = ImageOps.exif_transpose(opened)
            if im.mode in WIDE_GRAY_MODES:
                return Photo(np.clip(np.asarray(im), 0, 65535).astype(np.uint16)[None])
            if im.mode in GRAY_MODES:
                return Photo(np.asarray(im.convert("L"))[None].copy())
            rgb = np.ascontiguousarray(np.asarray(im.convert("RGB")).transpose(2, 0, 1))
            if np.array_equal(rgb[0], rgb[1]) and np.array_equal(rgb[1], rgb[2]):
                return Photo(rgb[:1].copy())  # a gray photo saved as RGB (three equal channels) is gray too
            return Photo(rgb)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return None


def write_photo(path: Path, photo: Photo) -> None:
    """PNG (lossless) at the photo's channels and depth, written atomically."""
    array = photo.pixels.transpose(1, 2, 0)
    image = Image.fromarray(array[:, :, 0] if photo.gray else array)  # uint16 gray becomes Pillow's 16-bit mode, I;16
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


# Full-range BT.601 YCbCr (JPEG's), with values in [0, 1] and chroma centred on 0; Y is exactly `masks.to_luma`'s luma.
CB_SCALE = 2 * (1 - LUMA[2])  # 1.772
CR_SCALE = 2 * (1 - LUMA[0])  # 1.402


def luma(rgb: np.ndarray) -> np.ndarray:
    """(3, H, W) -> (1, H, W)."""
    return np.tensordot(np.asarray(LUMA), rgb, axes=1)[None]


def chroma(rgb: np.ndarray) -> np.ndarray:
    """(3, H, W) -> (2, H, W): Cb, Cr."""
    y = luma(rgb)[0]
    return np.stack([(rgb[2] - y) / CB_SCALE, (rgb[0] - y) / CR_SCALE])


def to_rgb(y: np.ndarray, cbcr: np.ndarray) -> np.ndarray:
    """(1, H, W) luma and (2, H, W) chroma -> (3, H, W) RGB, not clipped."""
    r = y[0] + CR_SCALE * cbcr[1]
    b = y[0] + CB_SCALE * cbcr[0]
    g = (y[0] - LUMA[0] * r - LUMA[2] * b) / LUMA[1]
    return np.stack([r, g, b])


def membrane_fill(values: np.ndarray, hole: np.ndarray, sweeps: int = 50) -> np.ndarray:
    """`values` (C, H, W) with the pixels of `hole` (H, W) replaced by a membrane (harmonic) interpolation of the pixels
    around them: each hole pixel is the mean of its 4 neighbours, so the fill varies smoothly between the surrounding
    values and never leaves their range. Solved coarse to fine, so a hole of any size converges in a few sweeps."""
    known = torch.from_numpy(values).float()
    mask = torch.from_numpy(hole)
    return _membrane(known, mask, sweeps).numpy()


def _membrane(values: torch.Tensor, hole: torch.Tensor, sweeps: int) -> torch.Tensor:
    if not bool(hole.any()):
        return values
    if min(hole.shape) > 8:
        # Coarse level: 2x2 blocks averaged over their known pixels; a block is a hole only when all of it is.
        weight = (~hole).float()[None, None]
        total = F.avg_pool2d(values[None] * weight, 2, ceil_mode=True)[0]
        count = F.avg_pool2d(weight, 2, ceil_mode=True)[0]
        coarse_hole = count[0] == 0
        coarse = _membrane(total / count.clamp_min(1e-12), coarse_hole, sweeps)
        guess = F.interpolate(coarse[None], size=tuple(hole.shape), mode="bilinear", align_corners=False)[0]
    else:
        guess = values[:, ~hole].mean(1)[:, None, None].expand_as(values) if bool((~hole).any()) else values
    x = torch.where(hole, guess, values)
    # Coarse levels carry the solution; a fine level only corrects what upsampling blurred near the hole's border.
    for _ in range(sweeps if max(hole.shape) <= 64 else sweeps // 5):
        edge = F.pad(x[None], (1, 1, 1, 1), mode="replicate")[0]  # the photo's border: no flow across it
        around = (edge[:, :-2, 1:-1] + edge[:, 2:, 1:-1] + edge[:, 1:-1, :-2] + edge[:, 1:-1, 2:]) / 4
        x = torch.where(hole, around, values)
    return x
