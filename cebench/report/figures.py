"""Report figures (matplotlib, object API, no global state), one PNG each: metric bars, training curves, sample grids,
sharpness distributions, and copies of tuning plots."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from cebench.imageio import atomic_path
from cebench.report.load import Study
from cebench.report.stats import metric_key, seed_averaged

COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]
BAR_METRICS = (("psnr", "PSNR (dB), higher is better"), ("ssim", "SSIM, higher is better"),
               ("l1", "L1 (%), lower is better"), ("sharpness", "sharpness (1 = as sharp as truth)"))
CURVES = (("loss_rec", "reconstruction loss (train)"), ("loss_adv", "adversarial loss of G (train)"),
          ("loss_d", "critic loss (train)"), ("val_psnr", "validation PSNR (dB)"))
DPI = 110


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight", facecolor="white", format="png")
    return path


def _wrap(label: str) -> str:
    return label.replace(", ", "\n")


def bars(study: Study, agg: pd.DataFrame, spec: str, luma: bool, path: Path) -> Path:
    """Per variant: the seed mean (bar), each seed's test-set mean (dots), the 95% t-interval over seeds (error bar)."""
    rows = agg[agg["spec"] == spec]
    fig = Figure(figsize=(2 * max(4.5, 1.25 * len(rows) + 1), 7.5), layout="constrained")
    x = np.arange(len(rows))
    for ax, (m, title) in zip(fig.subplots(2, 2).flat, BAR_METRICS, strict=True):
        keys = [metric_key(m, c, luma) for c in rows["channels"]]
        means = np.array([r[k] for (_, r), k in zip(rows.iterrows(), keys, strict=True)], dtype=float)
        lo = np.array([r[f"{k}_lo"] for (_, r), k in zip(rows.iterrows(), keys, strict=True)], dtype=float)
        hi = np.array([r[f"{k}_hi"] for (_, r), k in zip(rows.iterrows(), keys, strict=True)], dtype=float)
        err = np.vstack([means - lo, hi - means])
        ax.bar(x, means, color=[COLOURS[i % len(COLOURS)] for i in x], alpha=0.75,
               yerr=np.nan_to_num(err) if np.isfinite(err).any() else None, capsize=4)
        for i, ((_, r), k) in enumerate(zip(rows.iterrows(), keys, strict=True)):
            seeds = study.runs.set_index("run_dir").loc[r["run_dirs"], f"{k}_mean"].to_numpy(dtype=float)
            ax.plot(np.full(len(seeds), i) + np.linspace(-0.12, 0.12, len(seeds)), seeds, "o", color="black", ms=3)
        if m == "sharpness":
            ax.axhline(1.0, color="grey", ls=":", lw=1)
        finite = np.concatenate([means, lo, hi])
        finite = finite[np.isfinite(finite)]
        if m != "sharpness" and len(finite):  # zoom in: differences matter, not the distance from zero
            span = max(finite.max() - finite.min(), 1e-6)
            ax.set_ylim(finite.min() - 0.6 * span, finite.max() + 0.4 * span)
            ax.set_ylabel("axis zoomed, not from 0", fontsize=8, color="grey")
        if m != "sharpness" and f"fill_{m}" in rows and rows["channels"].nunique() == 1 and not luma:
            fill = rows[f"fill_{m}"].mean()
            low, high = ax.get_ylim()
            where = "" if low <= fill <= high else (" (below the axis)" if fill < low else " (above the axis)")
            ax.axhline(fill, color="grey", ls="--", lw=1, label=f"fill only, no model: {fill:.3g}{where}")
            ax.set_ylim(low, high)
            ax.legend(fontsize=8, loc="upper right")
        ax.set_title(title, fontsize=10)
        ax.set_xticks(x, [_wrap(v) for v in rows["variant"]], fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    note = "; colour runs on luma" if luma else ""
    fig.suptitle(f"{spec}: test-set means per variant (dots: seeds; error bars: 95% CI over seeds{note})",
                 fontsize=11)
    return _save(fig, path)


def curves(study: Study, agg: pd.DataFrame, spec: str, path: Path) -> Path | None:
    """Training losses and validation PSNR per epoch: mean over seeds, band from the lowest to the highest seed."""
    rows = agg[agg["spec"] == spec]
    histories: dict[str, pd.DataFrame] = {}
    for _, r in rows.iterrows():
        # An untrained run (pretext none) has an empty history: no epochs, no curve.
        found = [pd.read_csv(h) for d in r["run_dirs"] if (h := Path(d) / "history.csv").is_file() and h.stat().st_size > 1]
        if found:
            histories[r["variant"]] = pd.concat(found)
    if not histories:
        return None
    fig = Figure(figsize=(11, 6.5), layout="constrained")
    for ax, (col, title) in zip(fig.subplots(2, 2).flat, CURVES, strict=True):
        for i, (variant, history) in enumerate(histories.items()):
            if col not in history or (col in ("loss_adv", "loss_d") and not history[col].abs().gt(0).any()):
                continue
            by_epoch = history.groupby("epoch")[col]
            mean, lo, hi = by_epoch.mean(), by_epoch.min(), by_epoch.max()
            ax.plot(mean.index, mean.to_numpy(), "-o", ms=3, color=COLOURS[i % len(COLOURS)], label=variant)
            ax.fill_between(mean.index, lo.to_numpy(), hi.to_numpy(), color=COLOURS[i % len(COLOURS)], alpha=0.15)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no run with this loss", ha="center", va="center", transform=ax.transAxes, color="grey")
    fig.suptitle(f"{spec}: training curves (line: mean over seeds; band: min to max)", fontsize=11)
    return _save(fig, path)


def _sample_rows(png: Path) -> list[np.ndarray]:
    """The three image rows of a run's samples.png (masked input, composited prediction, ground truth)."""
    grid = np.asarray(Image.open(png).convert("RGB"))
    side = (grid.shape[0] - 2) // 3 - 2  # torchvision make_grid: 2 px padding around every tile
    return [grid[2 + i * (side + 2) - 2 : 2 + i * (side + 2) + side + 2] for i in range(3)]


def samples(agg: pd.DataFrame, spec: str, path: Path) -> Path | None:
    """Context | each variant's fill | ground truth for the same first test images (each variant's lowest seed)."""
    rows = agg[agg["spec"] == spec]
    strips: dict[str, list[np.ndarray]] = {}
    for _, r in rows.iterrows():
        first = sorted(zip(r["seeds"], r["run_dirs"], strict=True))[0]
        png = Path(first[1]) / "samples.png"
        if png.is_file():
            strips[f"{r['variant']}\n(seed {first[0]})"] = _sample_rows(png)
    if not strips:
        return None
    colour = [v for k, v in strips.items() if v[2].std(axis=2).max() > 0] or list(strips.values())
    named = [("context (input)", colour[0][0])] + [(k, v[1]) for k, v in strips.items()] + [
        ("ground truth", colour[0][2])]
    width = max(s.shape[1] for _, s in named)
    height = max(s.shape[0] for _, s in named)
    scale = max(1, math.ceil(100 / height))  # small images: enlarge (nearest) so a reader can see them
    named = [(k, np.asarray(Image.fromarray(s).resize((width * scale, height * scale), Image.Resampling.NEAREST)))
             for k, s in named]
    fig = Figure(figsize=(width * scale / 100 + 1.8, len(named) * (height * scale / 100 + 0.08)), layout="constrained")
    for ax, (label, strip) in zip(np.atleast_1d(fig.subplots(len(named), 1)), named, strict=True):
        ax.imshow(strip, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        for s in ax.spines.values():
            s.set_visible(False)
    fig.suptitle(f"{spec}: the same first test images across variants", fontsize=11)
    return _save(fig, path)


def sharpness(study: Study, agg: pd.DataFrame, spec: str, luma: bool, path: Path) -> Path:
    """Per-image sharpness of the fill (seed-averaged) per variant; coloured by loss when the loss varies."""
    rows = agg[agg["spec"] == spec]
    by_loss = rows["loss"].nunique() > 1
    losses = list(dict.fromkeys(rows["loss"]))
    fig = Figure(figsize=(max(5.0, 1.6 * len(rows) + 2), 4.2), layout="constrained")
    ax = fig.subplots()
    rng = np.random.default_rng(0)
    for i, (_, r) in enumerate(rows.iterrows()):
        values = seed_averaged(study, r["run_dirs"], metric_key("sharpness", r["channels"], luma)).to_numpy()
        colour = COLOURS[losses.index(r["loss"]) if by_loss else i % len(COLOURS)]
        ax.boxplot(values, positions=[i], widths=0.5, showfliers=False, medianprops={"color": "black"})
        ax.plot(i + rng.uniform(-0.18, 0.18, len(values)), values, "o", ms=2.5, alpha=0.5, color=colour)
        ax.plot([i - 0.25, i + 0.25], [values.mean()] * 2, color=colour, lw=2.5)
    ax.axhline(1.0, color="grey", ls=":", lw=1)
    ax.set_xticks(range(len(rows)), [_wrap(v) for v in rows["variant"]], fontsize=8)
    ax.set_ylabel("sharpness (pred / truth gradient)")
    ax.grid(axis="y", alpha=0.3)
    if by_loss:
        for loss in losses:
            ax.plot([], [], "o", color=COLOURS[losses.index(loss)], label=f"loss={loss}")
        ax.legend(fontsize=8)
    what = "L2 vs joint: " if set(losses) == {"l2", "joint"} else ""
    ax.set_title(f"{spec}: {what}sharpness of the fill per test image (bar: mean; 1 = as sharp as the truth)",
                 fontsize=10)
    return _save(fig, path)


def copy_tuning(study: Study, folder: Path) -> list[Path]:
    """The tuning study's own plots, copied beside the report's figures."""
    out = []
    for png in study.tune_plots:
        target = folder / f"tune_{png.parent.parent.name}_{png.stem}.png"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, target)
        out.append(target)
    return out
