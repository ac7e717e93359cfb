"""Report figures (matplotlib, object API): dot plots of the variants' means with their intervals, training curves,
sharpness distributions, and copies of tuning plots. Each is written as PNG (220 dpi) and vector PDF, sized for one or
two columns of an article, with a CSV of exactly the numbers it draws beside it."""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from cebench.classical import CLASSICAL
from cebench.imageio import atomic_path
from cebench.report.load import Study
from cebench.report.stats import metric_key, seed_averaged

COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]
PANELS = (("psnr", "PSNR (dB)\nhigher is better"), ("ssim", "SSIM\nhigher is better"),
          ("l1", "L1 (%)\nlower is better"), ("sharpness", "sharpness\n1 = as sharp as the truth"))
CURVES = (("loss_rec", "reconstruction loss (train)"), ("loss_adv", "adversarial loss of G (train)"),
          ("loss_d", "critic loss (train)"), ("val_psnr", "validation PSNR (dB)"))
DPI = 220  # PNG; every figure is also written as vector PDF
ONE_COLUMN, TWO_COLUMNS = 3.4, 7.0  # inches: an article's column and its full text width
FONT: dict[str, Any] = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
        "legend.fontsize": 7, "pdf.fonttype": 42}
REFERENCE_MARKERS = {"fill": "x", "classical": "D"}


F = TypeVar("F", bound=Callable[..., Any])


def styled(fn: F) -> F:
    """Run a figure function under the report's font sizes (artists read rcParams when made; nothing global changes)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with rc_context(FONT):  # type: ignore[arg-type]
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def save(fig: Figure, png: Path, numbers: pd.DataFrame) -> Path:
    """`png` (DPI), the same figure as vector PDF, and the exact numbers it draws as CSV beside them; returns `png`."""
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=DPI, facecolor="white", format="png")
    with atomic_path(png.with_suffix(".pdf")) as tmp:
        fig.savefig(tmp, facecolor="white", format="pdf", metadata={"CreationDate": None})
    with atomic_path(png.with_suffix(".csv")) as tmp:
        numbers.to_csv(tmp, index=False)
    return png


def clipped_texts(fig: Figure) -> list[str]:
    """What is drawn (partly) outside the figure: a title cut at the edge says less than it should."""
    from matplotlib.axes import Axes
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    def name(artist: Any) -> str:
        if isinstance(artist, Text):
            return artist.get_text()
        if isinstance(artist, Axes):
            return f"panel {artist.get_title() or artist.get_ylabel()!r}"
        return type(artist).__name__

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    edge = fig.bbox.padded(1.0)  # a pixel of antialiasing is not clipping
    # Tight boxes hold only what is drawn (tick labels outside the view limits are made but never drawn).
    boxes = [(a, a.get_tightbbox(renderer)) for a in fig.get_children() if a is not fig.patch]
    return [name(a) for a, box in boxes if box is not None and not all(edge.contains(*c) for c in box.corners())]


def _wrap(label: str) -> str:
    return label.replace(", ", "\n")


def best_classical(row: pd.Series, luma: bool) -> str | None:
    """The classical method with the highest hole PSNR on this variant's test images (None if none was recorded)."""
    key = metric_key("psnr", row["channels"], luma)
    found = {m: row.get(f"{m}_{key}", float("nan")) for m in CLASSICAL}
    found = {m: v for m, v in found.items() if not pd.isna(v)}
    return max(found, key=lambda m: found[m]) if found else None


@styled
def means(study: Study, agg: pd.DataFrame, spec: str, luma: bool, path: Path) -> Path:
    """A dot (forest) plot per metric: each variant's mean over seeds (point), 95% t-interval over seeds (line), each
    seed's test-set mean (small dots), and the references on the same images (fill only, best classical method)."""
    rows = agg[agg["spec"] == spec].reset_index(drop=True)
    n = len(rows)
    fig = new_figure(TWO_COLUMNS, 0.9 + 0.32 * n)
    axes = fig.subplots(1, len(PANELS), sharey=True)
    y = np.arange(n)[::-1]
    records = []
    runs = study.runs.set_index("run_dir")
    for ax, (m, title) in zip(axes, PANELS, strict=True):
        for i, (_, r) in enumerate(rows.iterrows()):
            key = metric_key(m, r["channels"], luma)
            mean, lo, hi = float(r[key]), float(r[f"{key}_lo"]), float(r[f"{key}_hi"])
            colour = COLOURS[i % len(COLOURS)]
            if np.isfinite(lo):
                ax.plot([lo, hi], [y[i]] * 2, color=colour, lw=1.6, solid_capstyle="butt")
            ax.plot(mean, y[i], "o", color=colour, ms=5, zorder=3)
            seeds = runs.loc[r["run_dirs"], f"{key}_mean"].to_numpy(dtype=float)
            ax.plot(seeds, np.full(len(seeds), y[i]) - 0.22, "|", color="black", ms=4, mew=0.8)
            records.append({"panel": m, "kind": "variant", "variant": r["variant"], "column": key, "value": mean,
                            "ci_lo": lo, "ci_hi": hi, "n_seeds": int(r["n_seeds"])})
            records += [{"panel": m, "kind": "seed", "variant": r["variant"], "column": f"{key}_mean", "value": v,
                         "seed": s} for s, v in zip(r["seeds"], seeds, strict=True)]
            references = [("fill", f"fill_{key}")]
            best = best_classical(r, luma)
            if best is not None:
                references.append(("classical", f"{best}_{key}"))
            for ref, column in references:
                value = r.get(column, float("nan"))
                if pd.isna(value):
                    continue
                marker = REFERENCE_MARKERS[ref]
                ax.plot(value, y[i] + 0.22, marker, color="grey", ms=4, mfc="none" if marker == "D" else "grey")
                records.append({"panel": m, "kind": ref, "variant": r["variant"], "column": column,
                                "value": float(value)})
        if m == "sharpness":
            ax.axvline(1.0, color="grey", ls=":", lw=0.8)
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
        ax.set_ylim(-0.6, n - 0.4)
    axes[0].set_yticks(y, [_wrap(v) for v in rows["variant"]])
    handles = [Line2D([], [], marker="o", color="black", ls="-", ms=4, label="mean over seeds, 95% CI"),
               Line2D([], [], marker="|", color="black", ls="none", label="one seed"),
               Line2D([], [], marker="x", color="grey", ls="none", label="fill only (no model)"),
               Line2D([], [], marker="D", color="grey", mfc="none", ls="none",
                      label="best classical inpainting (by PSNR)")]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, frameon=False)
    return save(fig, path, pd.DataFrame(records))


@styled
def curves(study: Study, agg: pd.DataFrame, spec: str, luma: bool, path: Path) -> Path | None:
    """Training losses and validation PSNR per epoch: mean over seeds, band from the lowest to the highest seed. With
    `luma`, colour runs' validation PSNR is their luma PSNR (`val_luma_psnr`), as in the tables."""
    rows = agg[agg["spec"] == spec]
    histories: dict[str, tuple[pd.DataFrame, str]] = {}
    for _, r in rows.iterrows():
        # An untrained run (pretext none) has an empty history: no epochs, no curve.
        found = [pd.read_csv(h) for d in r["run_dirs"] if (h := Path(d) / "history.csv").is_file() and h.stat().st_size > 1]
        if found:
            histories[r["variant"]] = (pd.concat(found), r["channels"])
    if not histories:
        return None
    fig = new_figure(TWO_COLUMNS, 4.4)
    records = []
    for ax, (col, title) in zip(fig.subplots(2, 2).flat, CURVES, strict=True):
        for i, (variant, (history, channels)) in enumerate(histories.items()):
            column = f"val_{metric_key('psnr', channels, luma)}" if col == "val_psnr" else col
            if column not in history or (col in ("loss_adv", "loss_d") and not history[col].abs().gt(0).any()):
                continue
            by_epoch = history.groupby("epoch")[column]
            mean, lo, hi = by_epoch.mean(), by_epoch.min(), by_epoch.max()
            colour = COLOURS[i % len(COLOURS)]
            ax.plot(mean.index, mean.to_numpy(), "-o", ms=2.5, lw=1, color=colour, label=variant)
            ax.fill_between(mean.index, lo.to_numpy(), hi.to_numpy(), color=colour, alpha=0.15)
            records += [{"panel": col, "variant": variant, "column": column, "epoch": int(e), "mean": float(mean[e]),
                         "min": float(lo[e]), "max": float(hi[e])} for e in mean.index]
        ax.set_title(title + (" (colour runs: luma)" if col == "val_psnr" and luma else ""))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        else:
            ax.text(0.5, 0.5, "no run with this loss", ha="center", va="center", transform=ax.transAxes, color="grey")
    return save(fig, path, pd.DataFrame(records))


@styled
def sharpness(study: Study, agg: pd.DataFrame, spec: str, luma: bool, path: Path) -> Path:
    """Per-image sharpness of the fill (seed-averaged) per variant; coloured by loss when the loss varies."""
    rows = agg[agg["spec"] == spec]
    by_loss = rows["loss"].nunique() > 1
    losses = list(dict.fromkeys(rows["loss"]))
    fig = new_figure(TWO_COLUMNS if len(rows) > 3 else ONE_COLUMN, 2.8)
    ax = fig.subplots()
    rng = np.random.default_rng(0)
    records = []
    for i, (_, r) in enumerate(rows.iterrows()):
        key = metric_key("sharpness", r["channels"], luma)
        values = seed_averaged(study, r["run_dirs"], key)
        colour = COLOURS[losses.index(r["loss"]) if by_loss else i % len(COLOURS)]
        ax.boxplot(values.to_numpy(), positions=[i], widths=0.5, showfliers=False, medianprops={"color": "black"})
        ax.plot(i + rng.uniform(-0.18, 0.18, len(values)), values.to_numpy(), "o", ms=1.8, alpha=0.5, color=colour)
        ax.plot([i - 0.25, i + 0.25], [values.mean()] * 2, color=colour, lw=2)
        records.append({"variant": r["variant"], "column": key, "statistic": "mean", "value": float(values.mean())})
        records += [{"variant": r["variant"], "column": key, "statistic": "image", "test_index": t,
                     "value": float(v)} for t, v in values.items()]
    ax.axhline(1.0, color="grey", ls=":", lw=1)
    ax.set_xticks(range(len(rows)), [_wrap(v) for v in rows["variant"]])
    ax.set_ylabel("sharpness (pred / truth gradient)")
    ax.grid(axis="y", alpha=0.3)
    if by_loss:
        for loss in losses:
            ax.plot([], [], "o", color=COLOURS[losses.index(loss)], label=f"loss={loss}")
        ax.legend()
    return save(fig, path, pd.DataFrame(records))


def copy_tuning(study: Study, folder: Path) -> list[Path]:
    """The tuning study's own plots, copied beside the report's figures."""
    out = []
    for png in study.tune_plots:
        target = folder / f"tune_{png.parent.parent.name}_{png.stem}.png"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, target)
        out.append(target)
    return out
