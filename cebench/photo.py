"""`cebench inpaint`: fill a hole in the user's own photographs with a trained run, at the photo's own resolution.

The model sees a square window around the hole, resized to its native size so that the hole maps onto the hole it was
trained on; its fill is scaled back to the window and only the hole (plus a feathered seam no wider than the overlap
band the model also predicts) is blended into the photo. Every other pixel is the photo's own, whatever its size or
aspect ratio. Gray stays gray: a gray photo is written gray, and a gray model fills a colour photo's hole in luma, with
chroma carried in from the hole's surroundings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from cebench.errors import UserError
from cebench.imageio import read_image, write_png
from cebench.inpaint import load_run
from cebench.masks import LUMA, Masks, center_box, fill_holes, grow, make_masks
from cebench.models import Generator
from cebench.task import Task

GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
# Full-range BT.601 (JPEG's YCbCr): luma with cebench's weights, then the two colour differences, scaled to [-0.5, 0.5].
_YCC = torch.tensor([LUMA, [-LUMA[0] / 1.772, -LUMA[1] / 1.772, 0.5], [0.5, -LUMA[1] / 1.402, -LUMA[2] / 1.402]],
                    dtype=torch.float64)


@dataclass(frozen=True)
class Hole:
    """A box in photo pixels and the pixels inside it that are missing: (H, W) bool, True = fill."""

    x: int
    y: int
    w: int
    h: int
    mask: torch.Tensor


@dataclass(frozen=True)
class Filled:
    image: torch.Tensor  # (C, H, W) float in [0, 1], C = 1 for a gray photo
    scale: float  # photo pixels per model pixel inside the window (> 1: the fill is upscaled)
    window: int  # the window's side in photo pixels


def parse_hole(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"--hole {text!r}: expected x,y,w,h in pixels, e.g. --hole 120,80,200,150") from None
    return x, y, w, h


def hole_of(photo_hw: tuple[int, int], box: tuple[int, int, int, int] | None, mask_path: Path | None,
            task: Task) -> Hole:
    """The hole: a box (`--hole`), a mask image's white pixels (`--mask`), or by default the centre region the model
    was trained on, scaled to the photo's sides."""
    height, width = photo_hw
    if mask_path is not None:
        mask_image = read_image(mask_path)
        if mask_image is None:
            raise UserError(f"--mask {mask_path}: not a readable image file")
        if tuple(mask_image.shape[-2:]) != photo_hw:
            raise UserError(f"--mask {mask_path}: size {mask_image.shape[2]}x{mask_image.shape[1]} differs from the "
                            f"photo's {width}x{height}")
        mask = mask_image[0] > 127
        if not mask.any():
            raise UserError(f"--mask {mask_path}: no white pixel, so no hole to fill")
        ys, xs = mask.nonzero(as_tuple=True)
        y0, x0 = int(ys.min()), int(xs.min())
        return Hole(x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0, mask)
    if box is None:
        v = task.variant
        inner = (center_box(v.image_size)[1] - 2 * v.overlap) / v.image_size
        w, h = max(1, round(width * inner)), max(1, round(height * inner))
        box = ((width - w) // 2, (height - h) // 2, w, h)
    x, y, w, h = box
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise UserError(f"--hole {x},{y},{w},{h}: not inside the {width}x{height} photo (x,y is the top-left corner)")
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[y : y + h, x : x + w] = True
    return Hole(x, y, w, h, mask)


@torch.no_grad()
def fill_photo(task: Task, generator: Generator, photo: torch.Tensor, hole: Hole, gray_photo: bool) -> Filled:
    """`photo` (3, H, W) uint8 with `hole` filled; the result is gray (1 channel) when `gray_photo`."""
    v = task.variant
    size, device = v.image_size, next(generator.parameters()).device
    side = center_box(size)[1]
    # Photo pixels per model pixel: the hole's longer side onto the model's hole (centre models), or onto half the
    # window (models trained on holes anywhere, whose holes were at most half the image).
    model_hole = side - 2 * v.overlap if task.centered else size // 2
    scale = max(hole.w, hole.h) / model_hole
    window = max(1, math.ceil(size * scale))
    left = round(hole.x + hole.w / 2 - window / 2)
    upper = round(hole.y + hole.h / 2 - window / 2)

    rgb = photo.double() / 255
    luma_photo = (rgb * _YCC[0].view(3, 1, 1)).sum(0, keepdim=True)
    source = luma_photo if gray_photo else rgb
    crop = _window(source, left, upper, window).float().to(device)
    crop_hole = _window(hole.mask[None].double(), left, upper, window).float().to(device)
    small = F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    if v.n_channels == 1 and small.shape[1] == 3:
        small = (small * _YCC[0].view(1, 3, 1, 1).to(small)).sum(1, keepdim=True)
    elif v.n_channels == 3 and small.shape[1] == 1:
        small = small.expand(-1, 3, -1, -1)
    if task.centered:
        masks = make_masks("center", 1, size, v.overlap, torch.Generator(device))
    else:
        small_hole = F.interpolate(crop_hole[None], size=(size, size), mode="area") > 0
        masks = Masks(hole=small_hole, region=grow(small_hole, v.overlap))
    x = fill_holes(small * 2 - 1, masks.hole, v.fill, torch.Generator(device).manual_seed(0))
    pred = (task.composite(small * 2 - 1, generator(x).float(), masks) + 1) / 2
    if pred.shape[1] == 3 and (gray_photo or v.n_channels == 1):
        pred = (pred * _YCC[0].view(1, 3, 1, 1).to(pred)).sum(1, keepdim=True)
    big = F.interpolate(pred, size=(window, window), mode="bicubic", align_corners=False).clamp(0, 1)[0].double().cpu()

    # The seam: 1 in the hole, falling to 0 over the overlap band the model predicted around it (in photo pixels).
    feather = round(v.overlap * scale)
    alpha = torch.stack([grow(hole.mask[None, None], r)[0, 0] for r in range(feather + 1)]).double().mean(0)
    ys, xs = _placement(photo.shape[-2:], left, upper, window)
    alpha_window = alpha[ys[0] : ys[1], xs[0] : xs[1]]
    placed = big[:, ys[0] - upper : ys[1] - upper, xs[0] - left : xs[1] - left]

    if gray_photo:
        out = luma_photo.clone()
        out[:, ys[0] : ys[1], xs[0] : xs[1]] += alpha_window * (placed - out[:, ys[0] : ys[1], xs[0] : xs[1]])
        return Filled(out.clamp(0, 1).float(), scale, window)
    ycc = torch.einsum("ij,jhw->ihw", _YCC, rgb)
    if placed.shape[0] == 3:
        new = torch.einsum("ij,jhw->ihw", _YCC, placed)
    else:  # a gray model: its luma, and chroma carried in from around the hole (the hole's own is missing)
        missing = (alpha > 0)[ys[0] : ys[1], xs[0] : xs[1]]
        chroma = _fill_from_context(ycc[1:, ys[0] : ys[1], xs[0] : xs[1]], missing, sigma=max(hole.w, hole.h) / 4)
        new = torch.cat([placed, chroma])
    region = ycc[:, ys[0] : ys[1], xs[0] : xs[1]]
    ycc[:, ys[0] : ys[1], xs[0] : xs[1]] = region + alpha_window * (new - region)
    out = torch.einsum("ij,jhw->ihw", torch.linalg.inv(_YCC), ycc)
    return Filled(out.clamp(0, 1).float(), scale, window)


def _window(image: torch.Tensor, left: int, upper: int, side: int) -> torch.Tensor:
    """The (C, side, side) square at (left, upper), the photo's edge pixels repeated where it reaches outside."""
    height, width = image.shape[-2:]
    pad = (max(0, -left), max(0, left + side - width), max(0, -upper), max(0, upper + side - height))
    padded = F.pad(image[None], pad, mode="replicate")[0] if any(pad) else image
    return padded[:, upper + pad[2] : upper + pad[2] + side, left + pad[0] : left + pad[0] + side]


def _placement(hw: torch.Size, left: int, upper: int, side: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The rows and columns of the photo the window covers."""
    return (max(0, upper), min(hw[0], upper + side)), (max(0, left), min(hw[1], left + side))


def _fill_from_context(planes: torch.Tensor, missing: torch.Tensor, sigma: float) -> torch.Tensor:
    """`planes` (C, H, W) with the `missing` pixels interpolated from the known ones around them (normalised
    convolution with a Gaussian of `sigma` px): smooth, and made only of the context."""
    sigma = max(1.0, sigma)
    radius = int(3 * sigma)
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float64) / sigma) ** 2)
    known = (~missing).double()[None, None]

    def blur(t: torch.Tensor) -> torch.Tensor:
        t = F.conv2d(F.pad(t, (radius, radius, 0, 0), mode="replicate"), taps.view(1, 1, 1, -1))
        return F.conv2d(F.pad(t, (0, 0, radius, radius), mode="replicate"), taps.view(1, 1, -1, 1))

    weight = blur(known)
    out = planes.clone()
    for c in range(planes.shape[0]):
        smooth = blur(planes[c][None, None] * known) / weight.clamp_min(1e-12)
        out[c] = torch.where(missing, smooth[0, 0], planes[c])
    return out


def is_gray(path: Path, photo: torch.Tensor) -> bool:
    """A gray photo: saved in a one-channel mode, or in colour with three equal channels."""
    with Image.open(path) as im:
        if im.mode in GRAY_MODES:
            return True
    return bool(torch.equal(photo[0], photo[1]) and torch.equal(photo[1], photo[2]))


def inpaint_files(run_dir: Path, images: list[Path], out_dir: Path, *, box: tuple[int, int, int, int] | None = None,
                  mask: Path | None = None, side_by_side: bool = False,
                  device: torch.device = torch.device("cpu")) -> list[tuple[Path, str]]:
    """Fill each photo; returns (path written, what was done) for each. Refuses, before writing anything, to write
    over an input or to write two outputs to one path."""
    task, generator, _, _ = load_run(run_dir, device)
    plans = [(path, out_dir / f"{path.stem}.png") for path in images]
    targets: dict[Path, Path] = {}
    inputs = {p.resolve(): p for p in [*images, *([mask] if mask else [])]}
    for path, out in plans:
        written = [out, *([out.with_name(f"{out.stem}_side_by_side.png")] if side_by_side else [])]
        for target in written:
            key = target.resolve()
            if key in inputs:
                raise UserError(f"{path}: its output {target} is an input; choose another --out folder")
            if key in targets:
                raise UserError(f"{targets[key]} and {path} would both be written to {target}: rename one, or fill "
                                "them in two calls with different --out folders")
            targets[key] = path
    done = []
    for path, out in plans:
        photo = read_image(path)
        if photo is None:
            raise UserError(f"{path}: not a readable image")
        gray = is_gray(path, photo)
        hole = hole_of((photo.shape[1], photo.shape[2]), box, mask, task)
        filled = fill_photo(task, generator, photo, hole, gray)
        write_png(out, filled.image)
        if side_by_side:
            original = (photo.double() / 255)
            original = (original * _YCC[0].view(3, 1, 1)).sum(0, keepdim=True) if gray else original
            blanked = torch.where(hole.mask, torch.full_like(original, 0.5), original).float()
            write_png(out.with_name(f"{out.stem}_side_by_side.png"),
                      torch.cat([blanked, filled.image, original.float()], dim=2))
        how = "upscaled" if filled.scale >= 1 else "downscaled"
        done.append((out, f"{path}: {photo.shape[2]}x{photo.shape[1]}{' gray' if gray else ''}, hole {hole.w}x{hole.h} "
                          f"at ({hole.x},{hole.y}); model {task.variant.image_size} px "
                          f"({task.variant.channels}), fill {how} {max(filled.scale, 1 / filled.scale):.1f}x "
                          f"-> {out}"))
    return done


__all__ = ["Filled", "Hole", "fill_photo", "hole_of", "inpaint_files", "is_gray", "parse_hole"]
