"""Score any inpainting method's outputs against the ground truth: `cebench score --pred DIR --target DIR`.

Files are paired by their path relative to each folder without the extension (`a/b.png` pairs with `a/b.jpg`); both
folders are searched recursively. Every prediction must have a target and every target a prediction: unpaired files,
pairs of different sizes, unreadable files, a missing or empty folder, and a mask file of the wrong size are
`UserError`s naming the count and the first few offenders.

Each prediction is composited into its target's context (prediction inside the scored region, ground truth outside)
and scored with `cebench.metrics.score_batch`; see that module for the metric conventions. The scored region is the
centre square of half the image side (`--mask center`, including the overlap band: `Masks.region`, the 64x64 centre of
a 128 image) or the white (> 127) pixels of a mask image of the same size as the images (`--mask FILE`). If every
prediction file is single-channel (mode L, I, F, 1, LA), the method is taken for a grayscale model and scored
against the luma of the targets (plain metric keys only); otherwise predictions are scored in RGB and in luma.

With `classical=True` the targets are also inpainted by the classical methods of `cebench.classical` (the hole: the
centre region less its overlap band, or the mask file's white pixels) and scored the same way, as references on the
same images and holes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from rich.console import Console

from cebench.classical import CLASSICAL, inpaint
from cebench.errors import UserError, choices
from cebench.imageio import IMAGE_SUFFIXES, atomic_path, list_images, read_image
from cebench.masks import center_box, grow, make_masks, to_luma, white_pixels
from cebench.metrics import (
    HIGHER_IS_BETTER,
    METRIC_UNITS,
    MS_SSIM_MIN_SIDE,
    PSNR_MAX,
    REGIONS,
    SSIM_RADIUS,
    composite,
    score_batch,
    summarize,
)
from cebench.perceptual import availability as perceptual_weights
from cebench.perceptual import fid, inception, inception_features, kid, lpips_model, lpips_scores

MAX_NAMED = 3  # offending file names quoted in an error message
GRAY_MODES = frozenset({"L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "1"})


@dataclass(frozen=True)
class _Pair:
    key: str  # relative path without suffix
    name: str  # prediction path relative to the prediction folder
    pred: Path
    target: Path
    size: tuple[int, int]  # (height, width)
    pred_gray: bool


def _named(items: Sequence[str]) -> str:
    """'a, b, c, ...' with at most MAX_NAMED names."""
    shown = ", ".join(items[:MAX_NAMED])
    return shown + (", ..." if len(items) > MAX_NAMED else "")


def _files_have(n: int, what: str) -> str:
    """'1 prediction file has' / '3 prediction files have'."""
    return f"{n} {what} file has" if n == 1 else f"{n} {what} files have"


def _index(root: Path, what: str) -> dict[str, Path]:
    """Map relative path without suffix -> file for every image under `root`."""
    if not root.exists():
        raise UserError(f"{what} folder does not exist: {root}")
    if not root.is_dir():
        raise UserError(f"{what} path is not a folder: {root}")
    files = list_images(root)
    if not files:
        raise UserError(f"no images ({choices(IMAGE_SUFFIXES)}) found in {what} folder {root}")
    index: dict[str, Path] = {}
    clashes: list[str] = []
    for path in files:
        key = path.relative_to(root).with_suffix("").as_posix()
        if key in index:
            clashes.append(f"{index[key].relative_to(root).as_posix()} / {path.relative_to(root).as_posix()}")
        else:
            index[key] = path
    if clashes:
        raise UserError(f"{len(clashes)} {what} name{'s' if len(clashes) != 1 else ''} used with two extensions in "
                        f"{root} (files are paired by name without extension): {_named(clashes)}")
    return index


def _header(path: Path) -> tuple[tuple[int, int], str]:
    """((height, width), PIL mode) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            width, height = im.size
            return (height, width), im.mode
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise UserError(f"cannot read image {path}: {exc}") from None


def pair_files(pred_dir: Path, target_dir: Path) -> list[_Pair]:
    """Pair predictions with targets by relative path without extension; UserError on anything unpaired or
    mismatched in size. Sorted by key."""
    preds = _index(pred_dir, "prediction")
    targets = _index(target_dir, "target")
    problems = []
    lonely_preds = sorted(preds.keys() - targets.keys())
    lonely_targets = sorted(targets.keys() - preds.keys())
    if lonely_preds:
        names = [preds[k].relative_to(pred_dir).as_posix() for k in lonely_preds]
        problems.append(f"{_files_have(len(names), 'prediction')} no target in {target_dir}: {_named(names)}")
    if lonely_targets:
        names = [targets[k].relative_to(target_dir).as_posix() for k in lonely_targets]
        problems.append(f"{_files_have(len(names), 'target')} no prediction in {pred_dir}: {_named(names)}")
    if problems:
        raise UserError("; ".join(problems))
    pairs = []
    mismatched = []
    for key in sorted(preds):
        pred_size, mode = _header(preds[key])
        target_size, _ = _header(targets[key])
        if pred_size != target_size:
            mismatched.append(f"{preds[key].relative_to(pred_dir).as_posix()} ({_wxh(pred_size)} vs target "
                              f"{_wxh(target_size)})")
        name = preds[key].relative_to(pred_dir).as_posix()
        pairs.append(_Pair(key, name, preds[key], targets[key], pred_size, mode in GRAY_MODES))
    if mismatched:
        which = "prediction differs in size from its target" if len(mismatched) == 1 \
            else "predictions differ in size from their targets"
        raise UserError(f"{len(mismatched)} {which}: {_named(mismatched)}")
    return pairs


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[1]}x{size[0]}"


def center_region(height: int, width: int, overlap: int = 4) -> torch.Tensor:
    """Bool (1, 1, H, W): the centre region (square of half the side, overlap band included) of `make_masks`; for a
    non-square image, the centre box of half the height by half the width."""
    if height == width:
        return make_masks("center", 1, height, overlap).region
    top, side_h = center_box(height)
    left, side_w = center_box(width)
    region = torch.zeros(1, 1, height, width, dtype=torch.bool)
    region[..., top : top + side_h, left : left + side_w] = True
    return region


def read_mask(path: Path) -> torch.Tensor:
    """Bool (1, 1, H, W) region from a mask image: pixels whose gray level (BT.601 luma, rounded) is > 127."""
    image = read_image(path)
    if image is None:
        raise UserError(f"cannot read mask image {path}")
    region = white_pixels(image)[None, None]
    if not bool(region.any()):
        raise UserError(f"mask image {path} has no white (> 127) pixel: nothing to score")
    return region


def _region_for(mask: str, pairs: Sequence[_Pair], overlap: int) -> dict[tuple[int, int], torch.Tensor]:
    """Scored region (1, 1, H, W) for every image size in `pairs`."""
    sizes = sorted({p.size for p in pairs})
    if mask == "center":
        return {size: center_region(*size, overlap=overlap) for size in sizes}
    path = Path(mask)
    if not path.is_file():
        raise UserError(f"mask must be 'center' or an image file; file not found: {mask}")
    region = read_mask(path)
    mask_size = (region.shape[-2], region.shape[-1])
    wrong = [p.name for p in pairs if p.size != mask_size]
    if wrong:
        raise UserError(f"mask {path} is {_wxh(mask_size)} but {len(wrong)} image pair{'s' if len(wrong) != 1 else ''} "
                        f"differ{'s' if len(wrong) == 1 else ''} in size: {_named(wrong)}")
    return {mask_size: region}


def _check_ssim_extent(regions: dict[tuple[int, int], torch.Tensor], region: str) -> None:
    """SSIM's 11x11 window must fit in what is scored: the region's bounding box, or the whole image."""
    need = 2 * SSIM_RADIUS + 1
    for size, scored in sorted(regions.items()):
        if region == "image":
            h, w = size
        elif not bool(scored.any()):
            raise UserError(f"the scored region of {_wxh(size)} images is empty (the centre's overlap band takes all "
                            f"of it); SSIM needs a region of at least {need}x{need} px")
        else:
            rows = scored[0, 0].any(dim=1).nonzero()
            cols = scored[0, 0].any(dim=0).nonzero()
            h, w = int(rows[-1] - rows[0]) + 1, int(cols[-1] - cols[0]) + 1
        if min(h, w) < need:
            what = "images are" if region == "image" else "scored region is"
            raise UserError(f"{what} {w}x{h} px (for {_wxh(size)} images); SSIM needs at least {need}x{need}")


def _batches(pairs: Sequence[_Pair], batch_size: int) -> Iterable[list[_Pair]]:
    """Same-size batches of at most `batch_size` pairs."""
    by_size: dict[tuple[int, int], list[_Pair]] = defaultdict(list)
    for p in pairs:
        by_size[p.size].append(p)
    for size in sorted(by_size):
        group = by_size[size]
        for i in range(0, len(group), batch_size):
            yield group[i : i + batch_size]


def _load(paths: Iterable[Path]) -> torch.Tensor:
    images = []
    for path in paths:
        image = read_image(path)
        if image is None:
            raise UserError(f"cannot read image {path}")
        images.append(image)
    return torch.stack(images)


def convention_line(region: str, mask: str, overlap: int, gray: bool) -> str:
    """One line stating how the numbers were computed."""
    if region == "image":
        where = "whole image (prediction composited into the context)"
    elif mask == "center":
        where = "centre region (half the side, incl. overlap band)"
    else:
        where = f"white pixels of {mask}"
    space = "luma of the target (grayscale predictions)" if gray else "RGB and luma (BT.601)"
    return (f"per-image scores averaged over images, ± sample std (ddof=1); region: {where}; scored in {space}; "
            f"L1/L2 in % of [0, 1]; PSNR = 10·log10(1/MSE) dB, capped at {PSNR_MAX:g}; SSIM: 11x11 Gaussian σ=1.5, "
            f"K1=0.01, K2=0.03, 5 px border cropped; sharpness: Sobel gradient ratio pred/truth (1 = as sharp)")


def _bbox(region: torch.Tensor) -> tuple[slice, slice]:
    ys = region[0, 0].any(dim=1).nonzero().flatten()
    xs = region[0, 0].any(dim=0).nonzero().flatten()
    return slice(int(ys[0]), int(ys[-1]) + 1), slice(int(xs[0]), int(xs[-1]) + 1)


def _torch_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise UserError(f"invalid device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available")
    return dev


def score_dirs(pred_dir: Path, target_dir: Path, mask: str = "center", region: str = "hole", overlap: int = 4,
               out: Path | None = None, device: str = "cpu", *, batch_size: int = 32,
               gray: bool | None = None, classical: bool = False, perceptual: bool = False,
               weights: Path | None = None) -> pd.DataFrame:
    """Score every prediction in `pred_dir` against the same-named target in `target_dir`.

    mask: "center" or a mask image path (white = scored). region: "hole" (the scored region only) or "image" (whole
    composited image). overlap: the centre mask's overlap band (only matters if it eats the whole hole). gray: treat
    predictions as grayscale (scored against the target's luma); None = auto, true when every prediction file is
    single-channel. Returns one row per image (column `file`: the prediction's path relative to `pred_dir`, then the
    metric columns of `score_batch`), sorted by file; writes it as CSV to `out` atomically when given. The DataFrame's
    `attrs` hold region, mask, gray and the convention line, and with `classical` a per-image DataFrame `classical`
    (column `file`, then `<method>_<metric>`) of the classical references on the same targets and holes. Raises
    UserError on unpaired, mismatched or unreadable files (see the module docstring). With `perceptual`, LPIPS (per
    image, column `lpips`, on the scored region's bounding box or the whole image) and FID/KID of the composited
    images against the targets (`attrs["sets"]`) where their weights are on disk (`weights` folder or torch's hub
    cache); `attrs["absent"]` says why any of them is not there (see `cebench.perceptual`).
    """
    if region not in REGIONS:
        raise UserError(f"unknown region {region!r}; valid: {choices(REGIONS)}")
    if overlap < 0:
        raise UserError(f"overlap must be >= 0, got {overlap}")
    if batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")
    dev = _torch_device(device)
    pred_dir, target_dir = Path(pred_dir), Path(target_dir)
    pairs = pair_files(pred_dir, target_dir)
    regions = _region_for(mask, pairs, overlap)
    _check_ssim_extent(regions, region)
    if gray is None:
        gray = all(p.pred_gray for p in pairs)

    rows: list[dict[str, object]] = []
    references: list[dict[str, object]] = []
    found = perceptual_weights(weights) if perceptual else {}
    lpips_file, inception_file = found.get("lpips"), found.get("fid_kid")
    lpips_net = lpips_model(lpips_file) if isinstance(lpips_file, Path) else None
    inception_net = inception(inception_file) if isinstance(inception_file, Path) else None
    features: dict[str, list[np.ndarray]] = {"pred": [], "target": []}
    for batch in _batches(pairs, batch_size):
        pred = _load(p.pred for p in batch).to(dev).double() / 255.0
        target = _load(p.target for p in batch).to(dev).double() / 255.0
        if gray:
            pred = pred[:, :1]  # all three channels of a decoded single-channel file are equal
        scored = regions[batch[0].size].to(dev)
        composited = composite(pred, target, scored)
        scores = score_batch(composited, target, scored, region)
        shown_target = to_luma(target) if gray else target
        if lpips_net is not None:
            box = (slice(None), slice(None)) if region == "image" else _bbox(scored)
            scores["lpips"] = lpips_scores(lpips_net, composited[..., box[0], box[1]], shown_target[..., box[0], box[1]])
        if inception_net is not None:
            features["pred"].append(inception_features(inception_net, composited))
            features["target"].append(inception_features(inception_net, shown_target))
        values = {k: v.cpu().tolist() for k, v in scores.items()}
        for i, p in enumerate(batch):
            rows.append({"file": p.name, **{k: v[i] for k, v in values.items()}})
        if classical:
            hole = scored if mask != "center" else ~grow(~scored, overlap)  # what the method could not see
            by_method = {f"{m}_{k}": v.cpu().tolist() for m in CLASSICAL for k, v in score_batch(
                inpaint(m, to_luma(target) if gray else target, hole), target, scored, region).items()}
            references += [{"file": p.name, **{k: v[i] for k, v in by_method.items()}} for i, p in enumerate(batch)]

    df = pd.DataFrame(rows).sort_values("file", kind="stable").reset_index(drop=True)
    df.attrs.update(region=region, mask=mask, gray=gray, convention=convention_line(region, mask, overlap, gray))
    if classical:
        df.attrs["classical"] = pd.DataFrame(references).sort_values("file", kind="stable").reset_index(drop=True)
    if perceptual:
        df.attrs["absent"] = [v for v in found.values() if isinstance(v, str)]
        if inception_net is not None and len(df) < 2:
            df.attrs["absent"].append(f"FID/KID not computed: {len(df)} image (two or more needed)")
        elif inception_net is not None:
            a, b = np.concatenate(features["pred"]), np.concatenate(features["target"])
            kid_mean, kid_std = kid(a, b, subset_size=min(1000, len(a)))
            df.attrs["sets"] = {"fid": fid(a, b), "kid": kid_mean, "kid_std": kid_std, "n": len(a)}
    if out is not None:
        out = Path(out)
        with atomic_path(out) as tmp:
            df.to_csv(tmp, index=False)
    return df


def _fmt(value: float, key: str) -> str:
    return f"{value:.4f}" if key.endswith(("ssim", "sharpness")) else f"{value:.3f}"


def print_summary(df: pd.DataFrame, console: Console | None = None, fmt: str | None = None) -> None:
    """Mean ± std per metric column of a `score_dirs` DataFrame, with n and the convention line; then the predictions
    next to the classical references on the same targets and holes, where they were scored."""
    from cebench.output import Listing, emit

    console = console or Console()
    keys = [c for c in df.columns if c != "file" and pd.api.types.is_numeric_dtype(df[c])]
    stats = summarize({k: torch.tensor(df[k].to_numpy(dtype="float64")) for k in keys})

    summary = Listing(f"cebench score: {len(df)} image{'s' if len(df) != 1 else ''}",
                      ["metric", "mean ± std", "unit", "better", "mean", "std"], numeric={"mean ± std"},
                      detail={"mean", "std"}, display={"mean ± std"})
    for key in keys:
        base = key.removeprefix("luma_")
        better = HIGHER_IS_BETTER.get(base)
        mean, std = float(stats[f"{key}_mean"]), float(stats[f"{key}_std"])
        summary.rows.append([key, f"{_fmt(mean, key)} ± {_fmt(std, key)}", METRIC_UNITS.get(base, ""),
                             "higher" if better else "lower" if better is False else "≈ 1", mean, std])
    listings, notes = [summary], []
    if convention := df.attrs.get("convention"):
        notes.append(convention)
    notes += list(df.attrs.get("absent", []))
    if sets := df.attrs.get("sets"):
        notes.append(f"FID {sets['fid']:.2f}, KID {sets['kid']:.4f} ± {sets['kid_std']:.4f} over {sets['n']} images "
                     "(torchvision Inception-v3 features: comparable within cebench, not with published FIDs)")
    if "ms_ssim" not in df:
        notes.append(f"ms_ssim: not computed: five scales need a rectangular scored region (or, with --region image, "
                     f"images) of at least {MS_SSIM_MIN_SIDE}x{MS_SSIM_MIN_SIDE} px")
    if isinstance(references := df.attrs.get("classical"), pd.DataFrame):
        shown = [k for k in ("psnr", "ssim", "l1", "l2") if k in df]
        columns = [f"{k} ({METRIC_UNITS[k]})" if METRIC_UNITS[k] else k for k in shown]
        classical = Listing("classical references on the same images and holes (means)", ["method", *columns],
                            numeric=set(columns), prose={"method"},
                            show=lambda column, value: value if isinstance(value, str) else _fmt(value, column))
        classical.rows.append(["these predictions", *(float(df[k].mean()) for k in shown)])
        for method, description in CLASSICAL.items():
            classical.rows.append([f"{method}: {description}", *(float(references[f"{method}_{k}"].mean())
                                                                  for k in shown)])
        listings.append(classical)
        best = max(CLASSICAL, key=lambda m: references[f"{m}_psnr"].mean())
        ahead = df["psnr"].mean() > references[f"{best}_psnr"].mean()
        notes.append(f"PSNR: the predictions are {'ahead of' if ahead else 'NOT ahead of'} the best classical "
                     f"reference ({best}, {references[f'{best}_psnr'].mean():.3f} dB)")
    emit(listings, fmt, console, notes)


__all__ = ["center_region", "convention_line", "pair_files", "print_summary", "read_mask", "score_dirs"]
