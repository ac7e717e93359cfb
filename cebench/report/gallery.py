"""Galleries: what the numbers look like. Per variant, its best, median and worst test images by hole PSNR (context,
prediction, ground truth, the scored region outlined, the scores printed); a grid of every variant and every classical
method on the same test images; and, for the HTML page, the same grid zoomed on the hole.

Predictions are made again from each variant's saved weights (its lowest seed), with the evaluation masks and batching
of `cebench.evaluate`, so the scores printed under an image are recomputed from the image shown; the CSV beside each
figure lists them next to the run's stored per-image scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes

from cebench.checkpoint import RUN, WEIGHTS
from cebench.classical import CLASSICAL, inpaint
from cebench.data.source import image_batch, load_split
from cebench.evaluate import EVAL_MASK_SEED, eval_masks, inpaint_batch
from cebench.inpaint import load_run
from cebench.masks import fill_holes, to_luma
from cebench.metrics import score_batch
from cebench.report.document import Doc
from cebench.report.figures import ONE_COLUMN, TWO_COLUMNS, new_figure, save, styled
from cebench.report.load import Study
from cebench.report.stats import metric_key, seed_averaged
from cebench.task import Task

EVAL_BATCH = 256  # `cebench.evaluate.evaluate`'s batch size: the evaluation masks are drawn per batch
PICKS = ("best", "median", "worst")
GRID_IMAGES = 4
ZOOM_MARGIN = 2  # px of context kept around the region in the zoom


@dataclass
class Shown:
    """Images of one method on chosen test images, each (C, H, W) in [0, 1], with the scored region and hole."""

    prediction: dict[int, torch.Tensor]
    truth: dict[int, torch.Tensor]  # RGB ground truth
    context: dict[int, torch.Tensor]  # the input: hole filled, the rest visible
    region: dict[int, torch.Tensor]  # bool (H, W)
    scores: dict[int, dict[str, float]]


def _is_trained_run(run_dir: str) -> bool:
    return (Path(run_dir) / WEIGHTS).is_file() and (Path(run_dir) / RUN).is_file()


@torch.no_grad()
def _predict(run_dir: str, indices: list[int], splits: dict[str, torch.Tensor]) -> Shown:
    """The run's composited predictions on `indices` of its test split, exactly as `cebench.evaluate` made them."""
    device = torch.device("cpu")
    task, generator, data, _ = load_run(Path(run_dir), device)
    v = task.variant
    key = f"{data.model_dump_json()}|{v.image_size}"
    if key not in splits:
        splits[key] = load_split(data, "test", v.image_size, device)
    test = splits[key]
    shown = Shown({}, {}, {}, {}, {})
    for start in sorted({i // EVAL_BATCH * EVAL_BATCH for i in indices}):
        idx = torch.arange(start, min(start + EVAL_BATCH, len(test)))
        real = image_batch(test, idx, v.image_size, gray=False, train=False, generator=None)
        model_real = real if v.channels == "rgb" else to_luma(real)
        masks = eval_masks(task, len(idx), device, offset=start)
        pred = (inpaint_batch(generator, task, model_real, masks, amp=False) + 1) / 2
        context = (fill_holes(model_real, masks.hole, v.fill, torch.Generator().manual_seed(EVAL_MASK_SEED)) + 1) / 2
        scores = score_batch(pred, (real + 1) / 2, masks.region, region="hole")
        for i in (i for i in indices if start <= i < start + len(idx)):
            j = i - start
            shown.prediction[i], shown.truth[i], shown.context[i] = pred[j], (real[j] + 1) / 2, context[j]
            shown.region[i] = masks.region[j, 0]
            shown.scores[i] = {k: float(s[j]) for k, s in scores.items()}
    return shown


def _classical(task: Task, test: torch.Tensor, indices: list[int]) -> dict[str, Shown]:
    """Every classical method on `indices` of a test split, with `task`'s evaluation masks."""
    out = {m: Shown({}, {}, {}, {}, {}) for m in CLASSICAL}
    v = task.variant
    for start in sorted({i // EVAL_BATCH * EVAL_BATCH for i in indices}):
        idx = torch.arange(start, min(start + EVAL_BATCH, len(test)))
        crops = image_batch(test, idx, v.image_size, gray=False, train=False, generator=None)
        real01 = ((crops + 1) * 127.5).round().double() / 255  # as `cebench.classical.classical_scores`
        seen = real01 if v.channels == "rgb" else to_luma(real01)
        masks = eval_masks(task, len(idx), test.device, offset=start)
        keep = [i - start for i in indices if start <= i < start + len(idx)]
        for method in CLASSICAL:
            pred = inpaint(method, seen[keep], masks.hole[keep])
            scores = score_batch(pred, real01[keep], masks.region[keep], region="hole")
            for n, j in enumerate(keep):
                out[method].prediction[start + j], out[method].region[start + j] = pred[n], masks.region[j, 0]
                out[method].scores[start + j] = {k: float(s[n]) for k, s in scores.items()}
    return out


def _picks(per_image: pd.Series) -> dict[str, int]:
    """Best, median and worst test image by a per-image score (higher is better), ties to the lowest index."""
    ranked = per_image.dropna().sort_values(ascending=False, kind="stable")
    return {"best": int(ranked.index[0]), "median": int(ranked.index[len(ranked) // 2]),
            "worst": int(ranked.index[-1])}


def _show(ax: Axes, image: torch.Tensor, region: torch.Tensor | None, title: str,
          crop: tuple[slice, slice] | None = None) -> None:
    """One image cell: RGB or gray in [0, 1], the scored region outlined, a small title."""
    pixels = image.detach().to("cpu", torch.float64).clamp(0, 1).permute(1, 2, 0).numpy()
    mask = None if region is None else region.cpu().numpy()
    if crop is not None:
        pixels = pixels[crop]
        mask = None if mask is None else mask[crop]
    if pixels.shape[-1] == 1:
        ax.imshow(pixels[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(pixels, interpolation="nearest")
    if mask is not None and mask.any() and not mask.all():
        ax.contour(mask.astype(float), levels=[0.5], colors="#ffd400", linewidths=0.7)
    ax.set_title(title, fontsize=6, pad=2)
    ax.set_xticks([])
    ax.set_yticks([])


def _bbox(region: torch.Tensor, margin: int) -> tuple[slice, slice]:
    ys, xs = torch.nonzero(region, as_tuple=True)
    h, w = region.shape
    return (slice(max(int(ys.min()) - margin, 0), min(int(ys.max()) + margin + 1, h)),
            slice(max(int(xs.min()) - margin, 0), min(int(xs.max()) + margin + 1, w)))


def _score_text(scores: dict[str, float], key: str) -> str:
    return f"{scores[key]:.2f} dB, SSIM {scores[key.replace('psnr', 'ssim')]:.3f}"


@styled
def best_median_worst(variant: str, run_dir: str, shown: Shown, picks: dict[str, int], key: str,
                      stored: pd.DataFrame, path: Path) -> Path:
    fig = new_figure(ONE_COLUMN, 3.75)
    records = []
    for row, (pick, i) in zip(fig.subplots(len(PICKS), 3), picks.items(), strict=True):
        region = shown.region[i]
        _show(row[0], shown.context[i], region, f"{pick}: test image {i}")
        _show(row[1], shown.prediction[i], region, _score_text(shown.scores[i], key))
        truth = shown.truth[i] if shown.prediction[i].shape[0] == 3 else to_luma(shown.truth[i][None])[0]
        _show(row[2], truth, region, "ground truth")
        records.append({"variant": variant, "run_dir": run_dir, "pick": pick, "test_index": i, "column": key,
                        "shown": shown.scores[i][key], "per_image_csv": stored.at[i, key],
                        "shown_ssim": shown.scores[i][key.replace("psnr", "ssim")]})
    fig.suptitle(f"{variant}\ncontext | prediction (hole PSNR, SSIM) | ground truth", fontsize=7)
    return save(fig, path, pd.DataFrame(records))


@styled
def grid(columns: list[tuple[str, str, Shown, str]], context: Shown, indices: list[int], path: Path,
         zoom: bool = False) -> Path:
    """Rows: test images; columns: context, every method, ground truth. `columns`: (label, kind, shown, key)."""
    n_cols = len(columns) + 2
    width = TWO_COLUMNS
    cell = width / n_cols
    fig = new_figure(width, cell * len(indices) + 0.35)
    axes = np.atleast_2d(fig.subplots(len(indices), n_cols))
    records = []
    for row, i in zip(axes, indices, strict=True):
        region = context.region[i]
        crop = _bbox(region, ZOOM_MARGIN) if zoom else None
        _show(row[0], context.context[i], region, f"image {i}: context", crop)
        for ax, (label, kind, shown, key) in zip(row[1:-1], columns, strict=True):
            _show(ax, shown.prediction[i], shown.region[i], f"{label}\n{shown.scores[i][key]:.2f} dB", crop)
            records.append({"test_index": i, "method": label, "kind": kind, "column": key,
                            "psnr": shown.scores[i][key], "ssim": shown.scores[i][key.replace("psnr", "ssim")]})
        _show(row[-1], context.truth[i], region, "ground truth", crop)
    return save(fig, path, pd.DataFrame(records))


def section(doc: Doc, study: Study, agg: pd.DataFrame, spec: str, luma: bool, out: Path) -> None:
    """The gallery figures of `spec` into `doc` (a note instead when the run folders hold no weights)."""
    rows = agg[agg["spec"] == spec].reset_index(drop=True)
    firsts = [sorted(zip(r["seeds"], r["run_dirs"], strict=True))[0][1] for _, r in rows.iterrows()]
    if not all(_is_trained_run(d) for d in firsts):
        doc.p(f"No gallery for `{spec}`: its run folders hold no model weights ({WEIGHTS}) to predict with.")
        return
    keys = [metric_key("psnr", r["channels"], luma) for _, r in rows.iterrows()]
    mean_psnr = pd.concat([seed_averaged(study, r["run_dirs"], k) for (_, r), k in zip(rows.iterrows(), keys,
                                                                                         strict=True)], axis=1)
    ranked = mean_psnr.mean(axis=1).sort_values(ascending=False, kind="stable")
    at = np.linspace(0, len(ranked) - 1, min(GRID_IMAGES, len(ranked))).round().astype(int)
    grid_indices = [int(ranked.index[k]) for k in at]  # easiest to hardest for the variants on average
    splits: dict[str, torch.Tensor] = {}
    columns: list[tuple[str, str, Shown, str]] = []
    for n, ((_, r), run_dir, key) in enumerate(zip(rows.iterrows(), firsts, keys, strict=True)):
        stored = study.per_image(run_dir)
        picks = _picks(stored[key])
        shown = _predict(run_dir, sorted(set(picks.values()) | set(grid_indices)), splits)
        path = best_median_worst(r["variant"], run_dir, shown, picks, key, stored,
                                 out / "figures" / f"gallery_{spec}_{n + 1}.png")
        doc.figure(path, f"{spec}, {r['variant']} (seed {min(r['seeds'])}): its best, median and worst test images by "
                   "hole PSNR; the scored region is outlined, the scores are recomputed from the image shown.")
        columns.append((r["variant"], "variant", shown, key))
    task, _, data, _ = load_run(Path(firsts[0]), torch.device("cpu"))
    test = splits[f"{data.model_dump_json()}|{task.variant.image_size}"]
    for method, shown in _classical(task, test, grid_indices).items():
        columns.append((method, "classical", shown, keys[0]))  # scored like the first variant (same channels)
    context = columns[0][2]
    caption = (f"{spec}: every variant (lowest seed) and every classical method (no training; the masks of "
               f"{rows['variant'].iloc[0]}) on the same test images, from the easiest to the hardest for the variants "
               "on average; hole PSNR under each image" + (" (colour runs: luma)" if luma else "") + ".")
    doc.figure(grid(columns, context, grid_indices, out / "figures" / f"grid_{spec}.png"), caption)
    doc.figure(grid(columns, context, grid_indices, out / "figures" / f"zoom_{spec}.png", zoom=True),
               f"{spec}: the same images, zoomed on the scored region ({ZOOM_MARGIN} px of context around it).",
               html_only=True)
