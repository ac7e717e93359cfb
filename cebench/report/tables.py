"""Report tables: built once as display cells (+ bold flags) and numbers, written as CSV (numbers), Markdown, HTML and
LaTeX (`cebench.report.latex`)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cebench.baselines import CONVENTIONS, METRIC_COLUMNS
from cebench.classical import CLASSICAL
from cebench.imageio import atomic_path, write_text
from cebench.metrics import HIGHER_IS_BETTER
from cebench.report.stats import DECIMALS, METRICS, Ablation, Paired, beats_fill, metric_key, mixes_channels

HEADERS = {"l1": "L1 (%)", "l2": "L2 (%)", "psnr": "PSNR (dB)", "ssim": "SSIM", "sharpness": "sharpness"}


@dataclass
class Table:
    name: str
    title: str
    caption: str
    cells: pd.DataFrame  # strings, as displayed
    data: pd.DataFrame  # numbers, written to CSV for recomputation
    bold: set[tuple[int, str]] = field(default_factory=set)  # (row position, column)
    keys: list[str] = field(default_factory=list)  # columns that identify a row (repeated when a table is split)

    @property
    def key_columns(self) -> list[str]:
        return [k for k in self.keys if k in self.cells.columns] or [str(self.cells.columns[0])]


def num(value: float | None, metric: str) -> str:
    """`value` at the metric's printed precision; never "-0.00" (a difference that rounds to zero prints as 0)."""
    if value is None or pd.isna(value):
        return "-"
    text = f"{value:.{DECIMALS.get(metric, 3)}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


P_FLOOR = 1e-10


def p_value(p: float) -> str:
    """Two significant digits; below 1e-10 only the bound (the test's tail is not meaningful to more precision)."""
    if pd.isna(p):
        return "-"
    return f"< {P_FLOOR:.0e}" if p < P_FLOOR else f"{p:.2g}"


FILL_FLAG = " (≤ fill)"


def data_name(row: pd.Series) -> str:
    """The data as what it is: 'procedural landscapes (synthetic), 150 test images, 64 px'."""
    name = "procedural landscapes (synthetic)" if row.get("data_name") == "landscapes" else \
        f"image {row.get('data_name')} {row.get('data_path')}" if row.get("data_name") in ("folder", "pack") else \
        str(row.get("data_name"))
    return f"{name}, {int(row['n_test'])} test images, {int(row['image_size'])} px"


def published(value: float, metric: str) -> str:
    """A published number at the precision it was printed with (2 decimals; SSIM up to 4)."""
    if pd.isna(value):
        return "-"
    return f"{value:.4f}".rstrip("0").rstrip(".") if metric == "ssim" else f"{value:.2f}"


def _ci(lo: float, hi: float, metric: str) -> str:
    return "-" if pd.isna(lo) else f"[{num(lo, metric)}, {num(hi, metric)}]"


def _dataset(row: pd.Series) -> str:
    return data_name(row)


REFERENCE_LABELS = {"fill": "fill only, no model", **{m: d for m, d in CLASSICAL.items()}}


def scored_in(row: pd.Series, luma: bool) -> str:
    return "luma" if row["channels"] == "gray" or luma else "RGB"


def comparison(agg: pd.DataFrame, baselines: pd.DataFrame) -> Table:
    """The reproduction paper's Table I layout: our grid points (mean ± std over seeds), the references on the same
    test images (fill only, classical inpainting), then the published rows."""
    cells, data = [], []
    for _, r in agg.iterrows():
        luma = mixes_channels(agg, r["spec"])
        keys = {m: metric_key(m, r["channels"], luma) for m in METRIC_COLUMNS}
        flag = FILL_FLAG if beats_fill(r, "psnr", luma) is False else ""
        method = f"cebench {r['spec']}: {r['variant']}{flag}"
        convention = f"cebench: {r['value_range']}, {r['region']}, scored in {scored_in(r, luma)}"
        cells.append(["ours", method, _dataset(r), str(r["n_seeds"]),
                      *(num(r[k], m) + ("" if pd.isna(r[f"{k}_sd"]) else f" ± {num(r[f'{k}_sd'], m)}")
                        for m, k in keys.items()), convention])
        data.append({"kind": "ours", "method": method, "dataset": _dataset(r), "n_seeds": r["n_seeds"],
                     **{c: r[f"{k}{suffix}"] for m, k in keys.items() for c, suffix in ((m, ""), (f"{m}_sd", "_sd"))},
                     **{f"{m}_column": k for m, k in keys.items()}, "convention": convention})
    for (spec, channels), g in agg.groupby(["spec", "channels"], sort=False):
        luma = mixes_channels(agg, str(spec))
        keys = {m: metric_key(m, str(channels), luma) for m in METRIC_COLUMNS}
        convention = f"cebench: {g['value_range'].iloc[0]}, {g['region'].iloc[0]}, scored in " \
                     f"{scored_in(g.iloc[0], luma)}"
        for ref, what in REFERENCE_LABELS.items():
            if f"{ref}_psnr" not in g or g[f"{ref}_psnr"].isna().all():
                continue  # a results table written before this reference existed
            values = {m: g[f"{ref}_{k}"].mean() if f"{ref}_{k}" in g else float("nan") for m, k in keys.items()}
            label = f"{g['fill'].iloc[0]} {what}" if ref == "fill" else what
            label = f"{label} ({spec}, {'colour' if channels == 'rgb' else 'gray'})"
            cells.append(["reference", label, _dataset(g.iloc[0]), "-", *(num(values[m], m) for m in METRIC_COLUMNS),
                          convention])
            data.append({"kind": "reference", "method": label, "dataset": _dataset(g.iloc[0]), **values,
                         **{f"{m}_column": f"{ref}_{k}" for m, k in keys.items()}, "convention": convention})
    for _, b in baselines.iterrows():
        kind = "published" if b["kind"] == "published" else "measured"
        label = f"{b['row_label']} ({b['source']}, {b['table']})"
        cells.append([kind, label, str(b["dataset"]), "-", *(published(b[m], m) for m in METRIC_COLUMNS),
                      f"{b['convention']}; region: {b['region']}"])
        data.append({"kind": kind, "method": label, "dataset": b["dataset"], **{m: b[m] for m in METRIC_COLUMNS},
                     "convention": b["convention"], "note": b["note"]})
    columns = ["kind", "method", "dataset", "seeds", *(f"mean {HEADERS[m]}" if m in ("l1", "l2") else HEADERS[m]
                                                      for m in METRIC_COLUMNS), "convention"]
    caption = ("Ours: mean ± sample std over seeds of each run's test-set mean (seeds = n). Gray runs are scored against "
               "the BT.601 luma of the ground truth; colour runs in RGB, or on luma where their spec also has gray "
               f"runs (the convention column says which). '{FILL_FLAG.strip()}': does not beat the fill-only reference "
               "in PSNR. References: no training, the same test images and holes, the same harness. Published rows "
               "were measured on other data (their dataset column) and, where stated, other conventions: compare with "
               "care. L1/L2 in % of the value range, SSIM as a fraction. See the notes under the baselines.")
    return Table("comparison", "Comparison with published results (layout of the reproduction paper's Table I)",
                 caption, pd.DataFrame(cells, columns=columns), pd.DataFrame(data), keys=["kind", "method"])


def conventions(agg: pd.DataFrame) -> Table:
    """Our numbers under other conventions that differ from cebench's only by value range or region."""
    scale = CONVENTIONS["[-1,1]"].scale
    cells, data = [], []
    for _, r in agg.iterrows():
        luma = mixes_channels(agg, r["spec"])
        k = {m: metric_key(m, r["channels"], luma) for m in ("l1", "l2", "psnr")}
        image = "image_luma" if luma and r["channels"] == "rgb" else "image"
        row = {"method": f"cebench {r['spec']}: {r['variant']} (scored in {scored_in(r, luma)})", "l1": r[k["l1"]],
               "l2": r[k["l2"]], "l1_pm1": r[k["l1"]] * scale["l1"], "l2_pm1": r[k["l2"]] * scale["l2"],
               "psnr": r[k["psnr"]], "image_psnr": r.get(f"{image}_psnr", np.nan),
               "image_ssim": r.get(f"{image}_ssim", np.nan)}
        data.append(row)
        cells.append([row["method"], num(row["l1"], "l1"), num(row["l2"], "l2"), num(row["l1_pm1"], "l1"),
                      num(row["l2_pm1"], "l2"), num(row["psnr"], "psnr"), num(row["image_psnr"], "psnr"),
                      num(row["image_ssim"], "ssim")])
    columns = ["method", "L1 % [0,1]", "L2 % [0,1]", "L1 % [-1,1]", "L2 % [-1,1]", "PSNR hole (dB)",
               "PSNR whole image (dB)", "SSIM whole image"]
    caption = ("Exact conversions of the seed means: on [-1,1] (code that scores the tanh output directly) L1 is x2 and L2 is "
               "x4, while PSNR and SSIM with data range 2 are unchanged. 'Whole image' scores the prediction "
               "composited into its context (MMagic-style PSNR/SSIM; its [0,255] range with data range 255 gives the "
               "same values). As fractions (the xyfJASON/Context-Encoder-pytorch CelebA-HQ ablation), divide L1 by 100.")
    return Table("conventions", "Our results in other metric conventions", caption,
                 pd.DataFrame(cells, columns=columns), pd.DataFrame(data))


def levels(ab: Ablation) -> Table:
    """Per level of the axis (every other axis fixed): seed mean with its 95% t-interval; bold = significantly best."""
    show_context = ab.levels["context"].ne("-").any()
    cells, data, bold = [], [], set()
    for i, (_, r) in enumerate(ab.levels.iterrows()):
        flag = FILL_FLAG if beats_fill(r, "psnr", ab.luma) is False else ""
        row_cells = ([r["context"]] if show_context else []) + [r["level"] + flag, str(r["n_seeds"])]
        entry = {"context": r["context"], "level": r["level"], "n_seeds": r["n_seeds"], "beats_fill": not flag}
        for m in METRICS:
            k = metric_key(m, r["channels"], ab.luma)
            lo, hi = r[f"{k}_lo"], r[f"{k}_hi"]
            row_cells.append(num(r[k], m) + ("" if pd.isna(lo) else f" {_ci(lo, hi, m)}"))
            entry.update({m: r[k], f"{m}_lo": lo, f"{m}_hi": hi, f"{m}_column": k})
            if (r["context"], r["level"], m) in ab.bold:
                bold.add((i, HEADERS[m]))
        cells.append(row_cells)
        data.append(entry)
    columns = (["fixed"] if show_context else []) + [ab.axis, "seeds", *(HEADERS[m] for m in METRICS)]
    luma = " Colour runs are scored on luma here, as everywhere for this spec, like the gray runs (like with like)." \
        if ab.luma else ""
    caption = (f"Effect of {ab.axis} with every other axis fixed: mean over seeds of the test-set means, 95% t-interval "
               "across seeds in brackets (none for one seed). Bold: best level whose paired difference from every other "
               "level is significant (see the paired table) and which beats the fill-only reference; sharpness has no "
               f"better direction and is never bold. '{FILL_FLAG.strip()}': does not beat the fill-only reference in "
               f"PSNR.{luma}"
               + (" With one seed, significance covers test-image noise only, not training randomness."
                  if (ab.levels["n_seeds"] < 2).any() else ""))
    return Table(f"ablation_{ab.spec}_{ab.axis}", f"{ab.spec}: effect of {ab.axis}", caption,
                 pd.DataFrame(cells, columns=columns), pd.DataFrame(data), bold, keys=["fixed", ab.axis])


def _direction(axis: str, p: Paired, sign: int) -> str:
    better = HIGHER_IS_BETTER.get(p.metric)
    if better is None:
        return f"{'higher' if sign > 0 else 'lower'} for {axis}={p.b}"
    return f"{axis}={p.b if (sign > 0) == better else p.a} better"


def verdict(axis: str, p: Paired) -> str:
    """In words: significant (both CIs), per image only (the seeds disagree), or no significant difference. A
    difference that prints as 0 at the metric's precision is never called better."""
    if p.printed_zero:
        return "no difference at the printed precision"
    if p.sign != 0:
        return _direction(axis, p, p.sign) + (" (1 seed: test-image noise only)" if p.n_seeds < 2 else "")
    if p.per_image_sign != 0 and p.n_seeds >= 2:
        return f"not significant over seeds (per image: {_direction(axis, p, p.per_image_sign)})"
    return "no significant difference"


def pairs(ab: Ablation) -> Table:
    """Every pairwise comparison: per-image paired differences (bootstrap CI, Wilcoxon) and the seed-level CI."""
    cells, data, bold = [], [], set()
    for i, p in enumerate(ab.pairs):
        text = verdict(ab.axis, p)
        cells.append([p.context, f"{p.b} − {p.a}", HEADERS[p.metric], num(p.diff, p.metric),
                      _ci(p.boot_lo, p.boot_hi, p.metric), p_value(p.p_wilcoxon), str(p.n_images),
                      _ci(p.seed_lo, p.seed_hi, p.metric), str(p.n_seeds), text])
        data.append({**{k: getattr(p, k) for k in p.__dataclass_fields__}, "significant": p.sign != 0,
                     "winner": p.winner, "verdict": text})
        if p.winner is not None:
            bold.add((i, "verdict"))
    columns = ["fixed", f"{ab.axis}: b − a", "metric", "mean Δ per image", "95% bootstrap CI", "Wilcoxon p", "images",
               "95% CI over seeds", "seeds", "verdict"]
    frame = pd.DataFrame(cells, columns=columns)
    if (frame["fixed"] == "-").all():
        frame = frame.drop(columns="fixed")
    caption = ("Paired over the same test images: each level's per-image score is averaged over its seeds, then "
               "Δ = b − a per image; percentile bootstrap CI of the mean Δ (10,000 resamples, fixed seed) and a two-sided "
               "Wilcoxon signed-rank p. 'CI over seeds': t-interval of the per-seed differences of test-set means "
               "(runs paired by seed; needs two or more seeds). Significant = the bootstrap CI excludes 0 and, with two "
               "or more seeds, the seed CI excludes 0 on the same side. No multiple-comparison correction."
               + (" Colour runs scored on luma." if ab.luma else ""))
    return Table(f"paired_{ab.spec}_{ab.axis}", f"{ab.spec}: paired differences for {ab.axis}", caption, frame,
                 pd.DataFrame(data), bold, keys=["fixed", columns[1], "metric"])


def runs(runs_table: pd.DataFrame) -> Table:
    """Every run (one per seed) with its test-set means: the input of every statistic above."""
    keep = ["spec", "variant", "seed", "run_id", *(f"{m}_mean" for m in METRICS),
            *(f"luma_{m}_mean" for m in METRICS), "train_time_s", "images_per_s", "warmup_s", "device"]
    data = runs_table[[c for c in keep if c in runs_table]]
    cells = data.astype(object).map(lambda v: f"{v:.4g}" if isinstance(v, float) else str(v))
    return Table("runs", "Every run", "One row per run: test-set means (L1/L2 in %, PSNR in dB).", cells, data,
                 keys=["variant", "seed"])


# ----------------------------------------------------------------------------------------------------------------------
# Writers


def _is_numeric(cell: str) -> bool:
    return bool(re.match(r"^\[?[-−+]?\d", cell)) or cell == "-"


def _numeric_column(values: pd.Series) -> bool:
    cells = [str(v) for v in values]
    return all(_is_numeric(c) for c in cells) and any(c != "-" for c in cells)


def to_markdown(t: Table) -> str:
    def cell(i: int, col: str) -> str:
        text = str(t.cells.iloc[i][col]).replace("|", "\\|")
        return f"**{text}**" if (i, col) in t.bold else text

    align = ["---:" if _numeric_column(t.cells[c]) else ":---" for c in t.cells.columns]
    lines = [f"**{t.title}**", "", "| " + " | ".join(t.cells.columns) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cell(i, c) for c in t.cells.columns) + " |" for i in range(len(t.cells))]
    return "\n".join([*lines, "", f"*{t.caption}*", ""])


def numeric_columns(t: Table) -> set[str]:
    return {str(c) for c in t.cells.columns if _numeric_column(t.cells[c])}


def to_html(t: Table) -> str:
    def cell(i: int, col: str) -> str:
        text = html.escape(str(t.cells.iloc[i][col]))
        cls = ' class="num"' if col in numeric else ""
        return f"<td{cls}><strong>{text}</strong></td>" if (i, col) in t.bold else f"<td{cls}>{text}</td>"

    numeric = {c for c in t.cells.columns if _numeric_column(t.cells[c])}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t.cells.columns)
    body = "\n".join("<tr>" + "".join(cell(i, c) for c in t.cells.columns) + "</tr>" for i in range(len(t.cells)))
    return (f'<figure class="table" id="{t.name}"><figcaption><strong>{html.escape(t.title)}</strong></figcaption>\n'
            f"<div class=\"scroll\"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table></div>\n"
            f'<p class="caption">{html.escape(t.caption)}</p></figure>')


def write(t: Table, folder: Path) -> dict[str, Path]:
    """tables/<name>.csv (numbers), .md and .tex (as displayed, with bold)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {ext: folder / f"{t.name}.{ext}" for ext in ("csv", "md", "tex")}
    with atomic_path(paths["csv"]) as tmp:
        t.data.to_csv(tmp, index=False)
    write_text(paths["md"], to_markdown(t))
    from cebench.report.latex import table_tex  # latex builds on this module

    write_text(paths["tex"], table_tex(t))
    return paths
