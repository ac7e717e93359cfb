"""`cebench eval` and `cebench inpaint`: use a trained run on new data or on a user's own photographs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cebench.checkpoint import RESULT, WEIGHTS, load_weights, read_run_config
from cebench.config import DataConfig
from cebench.data.source import load_split
from cebench.errors import UserError
from cebench.evaluate import evaluate
from cebench.imageio import read_image, write_png
from cebench.masks import Masks, center_box, fill_holes, grow, to_luma
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
    """Re-score a trained run on its own test split or on a folder of images; append the row to `out`."""
    task, generator, data, seed = load_run(run_dir, device)
    if data_path is not None:
        data = DataConfig(name="folder", path=data_path, n_train=None, n_val=0, n_test=n_test or 10**9)
    elif n_test is not None:
        data = data.model_copy(update={"n_test": n_test})
    test = _load_test(data, task.variant.image_size, device)
    scores = evaluate(generator, task, test, amp=device.type == "cuda")
    trained = json.loads((run_dir / RESULT).read_text()) if (run_dir / RESULT).is_file() else {}
    row = make_row(spec=trained.get("spec", run_dir.parent.name), run_id=run_dir.name, variant=task.variant, data=data,
                   seed=seed, summary=summarize(scores), n_test=len(test), device=device,
                   train_time_s=trained.get("train_time_s", float("nan")),
                   images_per_s=trained.get("images_per_s", float("nan")), extra={"evaluated": "eval"})
    append_rows(out or run_dir / "eval.csv", [row], replace_same_run=False)
    return row


def _load_test(data: DataConfig, image_size: int, device: torch.device) -> torch.Tensor:
    if data.name == "folder":
        # A whole folder is the test set: the folder loader splits by hash, so ask for every file as "test".
        assert data.path is not None
        from cebench.data.folder import load_folder
        from cebench.data.source import default_load_size

        return load_folder(data.path, "test", image_size, default_load_size(image_size) if data.load_size is None
                           else data.load_size, n_val=0, n_test=data.n_test).to(device)
    return load_split(data, "test", image_size, device)


@torch.no_grad()
def inpaint_files(run_dir: Path, images: list[Path], out_dir: Path, mask: str, device: torch.device) -> list[Path]:
    """Fill each image's hole at the model's resolution and composite the fill back at the image's own resolution."""
    task, generator, _, _ = load_run(run_dir, device)
    v = task.variant
    if task.centered and mask != "center":
        raise UserError(f"--mask {mask}: this run was trained on centre holes and can only fill them; valid: center")
    written = []
    for path in images:
        image = read_image(path)
        if image is None:
            raise UserError(f"{path}: not a readable image")
        full = image.to(device).float().unsqueeze(0) / 127.5 - 1
        h, w = full.shape[-2:]
        hole_full = _hole_at(mask, h, w, v.image_size, v.overlap, device)
        small = F.interpolate(full, size=(v.image_size, v.image_size), mode="bilinear", antialias=True,
                              align_corners=False)
        hole_small = F.interpolate(hole_full.float(), size=(v.image_size, v.image_size), mode="area") > 0.5
        if task.centered:
            hole_small = _hole_at("center", v.image_size, v.image_size, v.image_size, v.overlap, device)
        model_in = small if v.channels == "rgb" else to_luma(small)
        masks = Masks(hole=hole_small, region=grow(hole_small, v.overlap))
        x = fill_holes(model_in, masks.hole, v.fill, torch.Generator(device).manual_seed(0))
        pred = task.composite(model_in, generator(x).float(), masks)
        pred_full = F.interpolate(pred, size=(h, w), mode="bicubic", align_corners=False).clamp(-1, 1)
        if v.channels == "gray":
            full = to_luma(full)
        filled = torch.where(grow(hole_full, max(1, v.overlap * h // v.image_size // 2)), pred_full, full)
        target = out_dir / f"{path.stem}.png"
        write_png(target, ((filled[0] + 1) / 2).cpu())
        written.append(target)
    return written


def _hole_at(mask: str, h: int, w: int, size: int, overlap: int, device: torch.device) -> torch.Tensor:
    """The hole of an (h, w) image: the scaled centre square (minus the overlap band) or a mask file's white pixels."""
    if mask == "center":
        top, side = center_box(size)
        y0, y1 = round((top + overlap) * h / size), round((top + side - overlap) * h / size)
        x0, x1 = round((top + overlap) * w / size), round((top + side - overlap) * w / size)
        hole = torch.zeros(1, 1, h, w, dtype=torch.bool, device=device)
        hole[..., y0:y1, x0:x1] = True
        return hole
    mask_image = read_image(Path(mask))
    if mask_image is None:
        raise UserError(f"--mask {mask}: not 'center' and not a readable image file")
    if tuple(mask_image.shape[-2:]) != (h, w):
        raise UserError(f"--mask {mask}: size {tuple(mask_image.shape[-2:])} differs from the image's {(h, w)}")
    return (mask_image[:1] > 127).unsqueeze(0).to(device)
