"""`cebench eval` and `cebench inpaint`: use a trained run on new data or on a user's own photographs."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from cebench.checkpoint import RESULT, WEIGHTS, load_weights, read_run_config
from cebench.config import DataConfig
from cebench.data.source import load_split
from cebench.device import synchronize
from cebench.errors import UserError
from cebench.evaluate import evaluate
from cebench.imageio import read_image
from cebench.masks import MEAN_RGB, Masks, center_box, fill_holes, grow, make_masks, to_luma, white_pixels
from cebench.metrics import summarize
from cebench.models import Generator
from cebench.photo import Photo, chroma, luma, membrane_fill, photo_size, read_photo, to_rgb, write_photo
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


@dataclass(frozen=True)
class Window:
    """The square of the photo (photo pixels) that the model sees at its own resolution. It may reach past the photo's
    edges, which are then repeated outwards."""

    top: int
    left: int
    side: int


@torch.no_grad()
def inpaint_files(run_dir: Path, images: list[Path], out_dir: Path, device: torch.device, hole: str | None = None,
                  mask: Path | None = None, side_by_side: bool = False) -> Iterator[str]:
    """Fill one hole per photo with a trained run, at the photo's own size, channels and depth; yield one line per photo.

    Everything that can be refused (a bad --hole or --mask, an unreadable photo, an output that would overwrite an input
    or another output) is refused before the first file is written."""
    if hole is not None and mask is not None:
        raise UserError("--hole and --mask both given: choose the hole one way")
    task, generator, _, _ = load_run(run_dir, device)
    box = parse_box(hole) if hole is not None else None
    drawn = read_mask(mask) if mask is not None else None
    targets = plan_outputs(images, out_dir, side_by_side, protected=[mask] if mask is not None else [])
    for path in images:
        size = photo_size(path) if path.is_file() else None
        if size is None:
            raise UserError(f"{path}: {'not a readable image' if path.is_file() else 'no such file'}")
        choose_hole(path, size, task, box, drawn)
    model_size = task.variant.image_size
    for path, (filled_path, side_path) in zip(images, targets, strict=True):
        photo = read_photo(path)
        if photo is None:
            raise UserError(f"{path}: not a readable image (truncated?)")
        where = choose_hole(path, photo.pixels.shape[1:], task, box, drawn)
        filled, window = fill_photo(task, generator, photo, where, device)
        write_photo(filled_path, filled)
        if side_path is not None:
            write_photo(side_path, triptych(photo, filled, where))
        factor = window.side / model_size
        scale = f"hole upscaled {factor:.1f}x" if factor > 1 else f"hole not upscaled ({factor:.2f}x)"
        height, width = photo.pixels.shape[1:]
        kind = "gray" if photo.gray else "colour"
        yield f"{path} ({width}x{height} {kind}) -> {filled_path}: model {model_size} px; {scale}"


def plan_outputs(images: list[Path], out_dir: Path, side_by_side: bool,
                 protected: list[Path]) -> list[tuple[Path, Path | None]]:
    """Each photo's output files (OUT/NAME.png, and OUT/NAME.side-by-side.png); refuses any that would overwrite an
    input (a photo or the mask) or that two photos would share."""
    inputs = {p.resolve(): p for p in [*images, *protected]}
    same_files = {(s.st_dev, s.st_ino): p for p in inputs.values() if p.is_file() for s in [p.stat()]}  # hard links
    claimed: dict[Path, Path] = {}
    plan = []
    for path in images:
        filled = out_dir / f"{path.stem}.png"
        side = out_dir / f"{path.stem}.side-by-side.png" if side_by_side else None
        for target in (filled, side):
            if target is None:
                continue
            key = target.resolve()
            stat = target.stat() if target.is_file() else None
            source = inputs.get(key) or (same_files.get((stat.st_dev, stat.st_ino)) if stat else None)
            if source is not None:
                raise UserError(f"{target}: would overwrite the input {source}; choose another --out folder")
            if key in claimed:
                twice = claimed[key].resolve() == path.resolve()
                raise UserError(f"{path} is given twice" if twice else f"{claimed[key]} and {path} would both be "
                                f"written to {target}; rename one of them or fill them in separate calls")
            claimed[key] = path
        plan.append((filled, side))
    return plan


def parse_box(text: str) -> tuple[int, int, int, int]:
    """--hole x,y,w,h: the hole's left, top, width and height in the photo's pixels."""
    try:
        x, y, w, h = (int(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"--hole {text!r}: expected x,y,w,h in photo pixels, e.g. 40,30,64,48") from None
    if x < 0 or y < 0 or w < 1 or h < 1:
        raise UserError(f"--hole {text!r}: x and y must be >= 0, w and h >= 1")
    return x, y, w, h


def read_mask(path: Path) -> np.ndarray:
    """A mask image's white pixels (gray level > 127, as `cebench score --mask` reads them) as a bool (H, W) hole."""
    image = read_image(path) if path.is_file() else None
    if image is None:
        raise UserError(f"--mask {path}: {'not a readable image' if path.is_file() else 'no such file'}")
    return white_pixels(image).numpy()


def choose_hole(path: Path, size: tuple[int, ...], task: Task, box: tuple[int, int, int, int] | None,
                drawn: np.ndarray | None) -> np.ndarray:
    """The photo's hole, bool (H, W): the --hole box, the --mask, or by default the centre region the model was trained
    on, scaled to the photo's height and width (so a non-square photo gets a proportional, non-square hole)."""
    height, width = size[0], size[1]
    hole = np.zeros((height, width), dtype=bool)
    if box is not None:
        x, y, w, h = box
        if x + w > width or y + h > height:
            raise UserError(f"--hole {x},{y},{w},{h}: reaches past the edge of {path} ({width}x{height} px)")
        hole[y : y + h, x : x + w] = True
    elif drawn is not None:
        if drawn.shape != hole.shape:
            raise UserError(f"--mask: {drawn.shape[1]}x{drawn.shape[0]} px, but {path} is {width}x{height} px; "
                            "the mask must have the photo's size")
        hole = drawn
    else:
        v = task.variant
        top, side = center_box(v.image_size)
        lo, hi = top + v.overlap, top + side - v.overlap
        rows = slice(height * lo // v.image_size, -(-height * hi // v.image_size))  # floor, ceil: never empty
        cols = slice(width * lo // v.image_size, -(-width * hi // v.image_size))
        hole[rows, cols] = True
    if not hole.any():
        raise UserError(f"--mask: no white pixels, so no hole to fill in {path}")
    if hole.all():
        raise UserError(f"{path}: the hole covers the whole {width}x{height} px photo; nothing is left to fill it from")
    return hole


def plan_window(task: Task, hole: np.ndarray) -> Window:
    """The square around the hole that maps the hole's longer side onto the hole the model was trained to fill (the
    centre square less the overlap band on each side; for block and region models, their largest training block).

    A centre model needs the hole at the window's centre: past the photo's edges the window is padded. Other models were
    trained on holes anywhere, so their window is shifted to stay inside the photo and see real context instead."""
    v = task.variant
    ys, xs = np.nonzero(hole)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    model_hole = max(center_box(v.image_size)[1] - 2 * v.overlap, 1)
    side = math.ceil(max(y1 - y0, x1 - x0) * v.image_size / model_hole)
    top, left = math.floor((y0 + y1 - side) / 2 + 0.5), math.floor((x0 + x1 - side) / 2 + 0.5)
    if not task.centered:
        height, width = hole.shape
        top = min(max(top, min(0, height - side)), max(0, height - side))
        left = min(max(left, min(0, width - side)), max(0, width - side))
    return Window(top, left, side)


def crop(values: np.ndarray, window: Window) -> np.ndarray:
    """(C, H, W) -> (C, side, side) float32; parts past the photo's edges repeat the edge pixels."""
    height, width = values.shape[1:]
    top, left, side = window.top, window.left, window.side
    inner = values[:, max(top, 0) : min(top + side, height), max(left, 0) : min(left + side, width)]
    pads = (max(-left, 0), max(left + side - width, 0), max(-top, 0), max(top + side - height, 0))
    return F.pad(torch.from_numpy(inner.astype(np.float32))[None], pads, mode="replicate")[0].numpy()


def resize(x: torch.Tensor, side: int) -> torch.Tensor:
    """(N, C, S, S) in [-1, 1] -> (N, C, side, side): bicubic, antialiased when shrinking; unchanged at the same size."""
    if x.shape[-1] == side:
        return x
    return F.interpolate(x, size=(side, side), mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)


def fill_photo(task: Task, generator: Generator, photo: Photo, hole: np.ndarray,
               device: torch.device) -> tuple[Photo, Window]:
    """The photo with its hole filled by the model at the model's resolution and blended back at the photo's."""
    v = task.variant
    window = plan_window(task, hole)
    seen = crop(photo.pixels, window) / photo.max_value  # (C, L, L) in [0, 1]
    seen_hole = crop(hole[None], window)[0] > 0.5  # edge pixels of a hole at the photo's edge stay hole when repeated
    x = torch.from_numpy(seen)[None].to(device) * 2 - 1
    if v.channels == "gray":
        x = to_luma(x)
    elif photo.gray:
        x = x.expand(-1, 3, -1, -1)  # a colour model sees a gray photo as gray RGB
    small = resize(x, v.image_size)
    blanked = F.interpolate(torch.from_numpy(seen_hole).float()[None, None].to(device), size=small.shape[-2:],
                            mode="area") > 0  # every model pixel the hole touches
    if task.centered:
        masks = make_masks("center", 1, v.image_size, v.overlap, torch.Generator(device))
        blanked |= masks.hole  # the model's own hole, plus edge pixels repeated from the photo's hole
    else:
        masks = Masks(hole=blanked, region=grow(blanked, v.overlap))
    model_input = fill_holes(small, blanked, v.fill, torch.Generator(device).manual_seed(0))
    pred = task.composite(small, generator(model_input).float(), masks)
    fill = (resize(pred, window.side)[0].cpu().numpy() + 1) / 2  # (model channels, L, L) in [0, 1]
    feather = round(v.overlap * window.side / v.image_size)
    rows, cols = changing(hole, window, feather)
    local = (slice(rows.start - window.top, rows.stop - window.top), slice(cols.start - window.left,
                                                                           cols.stop - window.left))
    fill = fill[:, local[0], local[1]].astype(np.float64)
    if photo.gray and v.channels == "rgb":
        fill = luma(fill)
    elif not photo.gray and v.channels == "gray":
        # The model fills luma only; the hole's colour comes from its surroundings: its Cb/Cr are a membrane (harmonic)
        # interpolation of the context's, so no colour of what was in the hole survives, and none is invented.
        fill = to_rgb(fill, fill_chroma(seen[:, local[0], local[1]], seen_hole[local]))
    return blend(photo, hole[rows, cols], fill, rows, cols, feather), window


def changing(hole: np.ndarray, window: Window, feather: int) -> tuple[slice, slice]:
    """The photo's rows and columns that the fill may change: the hole and `feather` px around it, inside the window
    (`plan_window` leaves more margin than that; only a window of a few pixels cuts the seam short)."""
    near = bounds(hole, feather + 1)
    return (slice(max(near[0].start, window.top), min(near[0].stop, window.top + window.side)),
            slice(max(near[1].start, window.left), min(near[1].stop, window.left + window.side)))


def fill_chroma(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Cb, Cr (2, H, W) of `rgb` with the hole's interpolated from the context around it. The membrane only depends on
    the pixels bordering the hole, so it is solved on the hole's bounding box plus one pixel."""
    cbcr = chroma(rgb)
    rows, cols = bounds(hole, 1)
    cbcr[:, rows, cols] = membrane_fill(cbcr[:, rows, cols], hole[rows, cols])
    return cbcr


def bounds(hole: np.ndarray, margin: int) -> tuple[slice, slice]:
    """Rows and columns of the hole's bounding box grown by `margin` px, inside the array."""
    ys, xs = np.nonzero(hole)
    height, width = hole.shape
    return (slice(max(int(ys.min()) - margin, 0), min(int(ys.max()) + 1 + margin, height)),
            slice(max(int(xs.min()) - margin, 0), min(int(xs.max()) + 1 + margin, width)))


def blend(photo: Photo, hole: np.ndarray, fill: np.ndarray, rows: slice, cols: slice, feather: int) -> Photo:
    """Paste `fill` (C, h, w) in [0, 1] over the photo's `rows` and `cols`, where `hole` (h, w) is: all of it in the hole,
    fading out over `feather` px of the context around it (the band the model was trained to match to the context,
    Pathak's overlap). Pixels farther from the hole keep their values exactly."""
    distance = cv2.distanceTransform((~hole).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    alpha = np.clip(1 - distance / (feather + 1), 0, 1)  # 1 in the hole, 0 from `feather` + 1 px away
    original = photo.pixels[:, rows, cols]
    mixed = alpha * np.clip(fill, 0, 1) * photo.max_value + (1 - alpha) * original
    pixels = photo.pixels.copy()
    pixels[:, rows, cols] = np.where(alpha > 0, np.rint(mixed), original).astype(pixels.dtype)
    return Photo(pixels)


def triptych(photo: Photo, filled: Photo, hole: np.ndarray) -> Photo:
    """input with its hole (Pathak's mean colour) | filled | original, side by side."""
    mean = (np.asarray(MEAN_RGB) + 1) / 2
    colour = luma(mean[:, None, None])[:, 0, 0] if photo.gray else mean
    holed = np.where(hole, np.rint(colour * photo.max_value)[:, None, None], photo.pixels).astype(photo.pixels.dtype)
    return Photo(np.concatenate([holed, filled.pixels, photo.pixels], axis=2))
