"""Scoring a trained generator on a split: predictions composited into their context, then the metric harness."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from cebench.data.source import image_batch
from cebench.masks import Masks, fill_holes, make_masks, to_luma
from cebench.metrics import score_batch
from cebench.task import Task

# Test holes are drawn from a fixed stream so every variant and seed is scored on the same masks (paired comparisons).
EVAL_MASK_SEED = 20160425


def eval_masks(task: Task, n: int, device: torch.device, offset: int = 0) -> Masks:
    """Masks for evaluation images [offset, offset + n): identical across runs for the same variant geometry."""
    v = task.variant
    gen = torch.Generator(device).manual_seed(EVAL_MASK_SEED + offset)
    return make_masks(v.mask, n, v.image_size, v.overlap, gen)


class FillOnly(nn.Module):
    """The trivial inpainter: returns its input's region, i.e. the hole fill (Pathak's mean colour) and the visible band."""

    def __init__(self, task: Task) -> None:
        super().__init__()
        self.task = task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.task.crop(x)


@torch.no_grad()
def inpaint_batch(generator: nn.Module, task: Task, real: torch.Tensor, masks: Masks, amp: bool) -> torch.Tensor:
    """Fill the holes of `real` (N, C, S, S in [-1, 1]) and composite the prediction back: (N, C, S, S) in [-1, 1]."""
    fill_gen = torch.Generator(real.device).manual_seed(EVAL_MASK_SEED)
    x = fill_holes(real, masks.hole, task.variant.fill, fill_gen)
    with torch.autocast(real.device.type, dtype=torch.bfloat16, enabled=amp):
        pred = generator(x)
    return task.composite(real, pred.float(), masks)


@torch.no_grad()
def evaluate(
    generator: nn.Module, task: Task, images: torch.Tensor, batch_size: int = 256, amp: bool = False
) -> dict[str, torch.Tensor]:
    """Per-image metrics over a uint8 split: hole-region keys as the harness names them, whole-image ones as `image_*`."""
    was_training = generator.training
    generator.eval()
    v = task.variant
    out: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(images), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(images)), device=images.device)
        real = image_batch(images, idx, v.image_size, gray=False, train=False, generator=None)
        model_real = real if v.channels == "rgb" else to_luma(real)
        masks = eval_masks(task, len(idx), images.device, offset=start)
        pred = inpaint_batch(generator, task, model_real, masks, amp)
        pred01, real01 = (pred + 1) / 2, (real + 1) / 2
        scores = score_batch(pred01, real01, masks.region, region="hole")
        scores.update({f"image_{k}": s for k, s in score_batch(pred01, real01, masks.region, region="image").items()})
        for k, s in scores.items():
            out.setdefault(k, []).append(s.float())
    generator.train(was_training)
    return {k: torch.cat(parts) for k, parts in out.items()}


SAMPLE_ROWS = ("input", "prediction", "ground truth")


def tile(images: torch.Tensor, columns: int, padding: int, pad_value: float) -> torch.Tensor:
    """(C, H', W') grid of (N, C, H, W) images, `columns` per row, `padding` px of `pad_value` around each: torchvision's
    `make_grid` layout, without importing torchvision (1.4 s of start-up on the `cebench run` path)."""
    n, c, h, w = images.shape
    rows = -(-n // columns)
    grid = images.new_full((c, rows * (h + padding) + padding, columns * (w + padding) + padding), pad_value)
    for k in range(n):
        top, left = padding + k // columns * (h + padding), padding + k % columns * (w + padding)
        grid[:, top : top + h, left : left + w] = images[k]
    return grid


def label_rows(grid: torch.Tensor, labels: tuple[str, ...]) -> torch.Tensor:
    """A uint8 (3, H, W) `make_grid` of len(labels) rows with each row's label written in a white margin on the left."""
    image = Image.fromarray(grid.permute(1, 2, 0).cpu().numpy())
    row = (image.height - 2) / len(labels)
    font = ImageFont.load_default(size=max(9, round(row / 5)))
    draw = ImageDraw.Draw(image)
    margin = max(int(draw.textlength(label, font=font)) for label in labels) + 8
    canvas = Image.new("RGB", (image.width + margin, image.height), "white")
    canvas.paste(image, (margin, 0))
    draw = ImageDraw.Draw(canvas)
    for i, label in enumerate(labels):
        draw.text((margin - 4, 1 + (i + 0.5) * row), label, fill="black", font=font, anchor="rm")
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).contiguous()


@torch.no_grad()
def sample_grid(generator: nn.Module, task: Task, images: torch.Tensor, n: int = 8, amp: bool = False) -> torch.Tensor:
    """uint8 (3, H, W) grid: rows of masked input | composited prediction | ground truth for the first n test images,
    each row labelled on the left."""
    was_training = generator.training
    generator.eval()
    v = task.variant
    idx = torch.arange(min(n, len(images)), device=images.device)
    real = image_batch(images, idx, v.image_size, gray=v.channels == "gray", train=False, generator=None)
    masks = eval_masks(task, len(idx), images.device)
    masked = fill_holes(real, masks.hole, v.fill, torch.Generator(real.device).manual_seed(EVAL_MASK_SEED))
    pred = inpaint_batch(generator, task, real, masks, amp)
    generator.train(was_training)
    rows = torch.cat([masked, pred, real]).expand(-1, 3, -1, -1)
    grid = tile((rows + 1) / 2, columns=len(idx), padding=2, pad_value=1.0)
    return label_rows((grid.clamp(0, 1) * 255).round().to(torch.uint8).cpu(), SAMPLE_ROWS)

