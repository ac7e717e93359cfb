"""`cebench eval` and `cebench inpaint`: use a trained run on new data or on a user's own photographs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cebench.checkpoint import RESULT, WEIGHTS, load_weights, read_run_config
from cebench.config import DataConfig
from cebench.data.source import load_split
from cebench.device import synchronize
from cebench.errors import UserError
from cebench.evaluate import evaluate
from cebench.imageio import read_image, write_png
from cebench.masks import Masks, fill_holes, grow, make_masks, to_luma
from cebench.metrics import summarize
from cebench.models import Generator
from cebench.results import append_rows, make_row
from cebench.task import Task


def load_run(run_dir: Path, device: torch.device) -> tuple[Task, Generator, DataConfig, int]:
    variant, data, seed = read_run_config(run_dir)
    task = Task(variant)
    generator = task.build_generator()
    load_weights(run_dir / WEIGHTS, generator)
    return task, generator.to(device).eval(), data, seed


def eval_run(run_dir: Path, device: torch.device, data_path: Path | None = None, n_test: int | None = None,
             out: Path | None = None) -> dict[str, Any]:
    """Re-score a trained run on its own test split or on a folder of images, next to the references of `cebench run`
    (fill, untrained model, classical inpainting) on the same images and holes; append the row to `out`."""
    from cebench.run import reference_scores  # run imports the trainer: only `eval` needs it here

    task, generator, data, seed = load_run(run_dir, device)
    if data_path is not None:
        # Every image of the folder is test data: n_test caps it, nothing goes to train or val.
        data = DataConfig(name="folder", path=data_path, n_train=None, n_val=0, n_test=n_test or 10**9)
    elif n_test is not None:
        data = data.model_copy(update={"n_test": n_test})
    test = load_split(data, "test", task.variant.image_size, device)
    started = time.perf_counter()
    scores = evaluate(generator, task, test, amp=device.type == "cuda")
    synchronize(device)  # the scores are still being computed on a GPU until here
    eval_images_per_s = len(test) / (time.perf_counter() - started)
    trained = json.loads((run_dir / RESULT).read_text()) if (run_dir / RESULT).is_file() else {}
    row = make_row(spec=trained.get("spec", run_dir.parent.name), run_id=run_dir.name, variant=task.variant, data=data,
                   seed=seed, summary=summarize(scores), n_test=len(test), device=device,
                   train_time_s=trained.get("train_time_s", float("nan")),
                   images_per_s=trained.get("images_per_s", float("nan")),
                   warmup_s=trained.get("warmup_s", float("nan")),
                   extra={"evaluated": "eval", "eval_images_per_s": eval_images_per_s,
                          **reference_scores(task, seed, test, device)})
    append_rows(out or run_dir / "eval.csv", [row], replace_same_run=False)
    return row


@torch.no_grad()
def inpaint_files(run_dir: Path, images: list[Path], out_dir: Path, mask: str, device: torch.device) -> list[Path]:
    """Fill each image's hole at the model's resolution and composite the fill back at the image's own resolution."""
    task, generator, _, _ = load_run(run_dir, device)
    if task.centered and mask != "center":
        raise UserError(f"--mask {mask}: this run was trained on centre holes and can only fill them; valid: center")
    written = []
    for path in images:
        image = read_image(path)
        if image is None:
            raise UserError(f"{path}: not a readable image")
        hole = None if mask == "center" else read_hole(Path(mask), tuple(image.shape[-2:])).to(device)
        filled = inpaint_image(task, generator, image.to(device), hole)
        written.append(out_dir / f"{path.stem}.png")
        write_png(written[-1], ((filled + 1) / 2).cpu())
    return written


def inpaint_image(task: Task, generator: Generator, image: torch.Tensor, hole: torch.Tensor | None) -> torch.Tensor:
    """(C, H, W) in [-1, 1]: `image` (uint8, any size) resized to the model's input, filled, and the fill scaled back
    and composited over the region at full resolution. `hole` (1, 1, H, W) bool, or None for the centre hole."""
    v = task.variant
    size = (v.image_size, v.image_size)
    full = image.float().unsqueeze(0) / 127.5 - 1
    full = full if v.channels == "rgb" else to_luma(full)
    small = F.interpolate(full, size=size, mode="bilinear", antialias=True, align_corners=False)
    if hole is None:
        masks = make_masks("center", 1, v.image_size, v.overlap, torch.Generator(image.device))
    else:
        small_hole = F.interpolate(hole.float(), size=size, mode="area") > 0
        masks = Masks(hole=small_hole, region=grow(small_hole, v.overlap))
    x = fill_holes(small, masks.hole, v.fill, torch.Generator(image.device).manual_seed(0))
    pred = task.composite(small, generator(x).float(), masks)
    height_width = full.shape[-2:]
    pred_full = F.interpolate(pred, size=height_width, mode="bicubic", align_corners=False).clamp(-1, 1)
    region = F.interpolate(masks.region.float(), size=height_width, mode="nearest") > 0.5
    if hole is not None:
        region |= hole
    return torch.where(region, pred_full, full)[0]


def read_hole(path: Path, size: tuple[int, ...]) -> torch.Tensor:
    """A mask image's white pixels as a (1, 1, H, W) hole; it must have the photo's size."""
    mask_image = read_image(path)
    if mask_image is None:
        raise UserError(f"--mask {path}: not 'center' and not a readable image file")
    if tuple(mask_image.shape[-2:]) != size:
        raise UserError(f"--mask {path}: size {tuple(mask_image.shape[-2:])} differs from the image's {size}")
    return (mask_image[:1] > 127).unsqueeze(0)
