"""Statistics for reports: aggregation over seeds, and paired comparisons of ablation levels on the same test images.

- Over seeds: each run contributes its test-set mean; a grid point's value is the mean over its seeds, with the sample
  std (ddof 1) and a 95% t-interval (n - 1 degrees of freedom; none for a single seed).
- Paired, per image: two levels of one axis (every other axis fixed) are scored on the same test images and masks. Each
  level's per-image metric is averaged over its seeds; the per-image differences (b - a) get a percentile bootstrap 95%
  CI of their mean (fixed RNG seed, vectorised resampling) and a Wilcoxon signed-rank test.
- Paired, per seed: the differences of the test-set means of runs with the same seed get a 95% t-interval (needs two
  or more common seeds). This one carries training randomness, which the per-image CI cannot see.
- A difference is significant when the per-image bootstrap CI excludes zero and, with two or more seeds, the seed CI
  excludes zero on the same side. No correction for multiple comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd
from scipy import stats as sps

from cebench.errors import UserError
from cebench.metrics import HIGHER_IS_BETTER
from cebench.report.load import Study, fmt_value

METRICS: Final = ("l1", "l2", "psnr", "ssim", "sharpness")
DECIMALS: Final = {"l1": 2, "l2": 3, "psnr": 2, "ssim": 3, "sharpness": 3}  # printed precision of each metric
LEVEL: Final = 0.95
N_BOOT: Final = 10_000
BOOT_SEED: Final = 0


def t_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Two-sided t confidence interval of the mean; (nan, nan) below two values."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) < 2:
        return float("nan"), float("nan")
    half = sps.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean() - half), float(v.mean() + half)


def bootstrap_ci(diff: np.ndarray, n_boot: int = N_BOOT, seed: int = BOOT_SEED,
                 level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `diff` (resampling images with replacement)."""
    d = np.asarray(diff, dtype=float)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 4_000_000 // max(len(d), 1))  # bounded memory for large test sets
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        means[start : start + k] = d[rng.integers(0, len(d), size=(k, len(d)))].mean(axis=1)
    lo, hi = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def wilcoxon_p(diff: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value; 1.0 when every difference is zero."""
    d = np.asarray(diff, dtype=float)
    if len(d) == 0 or np.all(d == 0):
        return 1.0
    return float(sps.wilcoxon(d).pvalue)


def mixes_channels(table: pd.DataFrame, spec: str) -> bool:
    """True when `spec` has colour and gray runs: then its colour runs are shown on their luma scores everywhere in a
    report (tables, figures, summary), so that every run has one number per metric and gray vs colour is like for like."""
    return table.loc[table["spec"] == spec, "channels"].nunique() > 1


def beats_fill(row: pd.Series, metric: str, luma: bool) -> bool | None:
    """Whether an aggregated variant beats the fill-only reference of its own results rows on `metric` (None when the
    metric has no direction or the reference was not recorded)."""
    better = HIGHER_IS_BETTER.get(metric)
    key = metric_key(metric, row["channels"], luma)
    fill = row.get(f"fill_{key}", float("nan"))
    if better is None or pd.isna(fill) or pd.isna(row[key]):
        return None
    return bool(row[key] > fill) if better else bool(row[key] < fill)


def metric_key(metric: str, channels: str, luma: bool) -> str:
    """The results column for `metric`: luma_<metric> for a colour run when comparing against gray runs."""
    return f"luma_{metric}" if luma and channels == "rgb" else metric


def aggregate(study: Study) -> pd.DataFrame:
    """One row per (spec, variant): every `<key>_mean` column averaged over seeds (`<key>`), with `<key>_sd`,
    `<key>_lo`/`<key>_hi` (95% t-interval), `n_seeds`, `seeds`, `run_dirs`, and the other columns' first values."""
    runs = study.runs
    keys = [c.removesuffix("_mean") for c in runs.columns if c.endswith("_mean")]
    rows = []
    for (spec, variant), group in runs.groupby(["spec", "variant"], sort=False):
        row = group.iloc[0].drop([f"{k}_mean" for k in keys] + [f"{k}_std" for k in keys], errors="ignore").to_dict()
        row.update(spec=spec, variant=variant, n_seeds=len(group), seeds=[int(s) for s in group["seed"]],
                   run_dirs=list(group["run_dir"]))
        for k in keys:
            values = group[f"{k}_mean"].to_numpy(dtype=float)
            row[k] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
            row[f"{k}_sd"] = float(np.nanstd(values, ddof=1)) if np.isfinite(values).sum() > 1 else float("nan")
            row[f"{k}_lo"], row[f"{k}_hi"] = t_interval(values)
        rows.append(row)
    return pd.DataFrame(rows)


def seed_averaged(study: Study, run_dirs: list[str], key: str) -> pd.Series:
    """Per-image `key` averaged over the runs (seeds) of one variant, indexed by test_index."""
    columns = []
    for run_dir in run_dirs:
        table = study.per_image(run_dir)
        if key not in table:
            raise UserError(f"{run_dir}/per_image.csv: no column {key!r}")
        columns.append(table[key].rename(run_dir))
    if not all(c.index.equals(columns[0].index) for c in columns):
        raise UserError(f"{run_dirs[0]} and the other seeds of its variant scored different test images")
    return pd.concat(columns, axis=1).mean(axis=1)


@dataclass(frozen=True)
class Paired:
    """Level b minus level a of one axis, every other axis fixed at `context`, on one metric."""

    spec: str
    axis: str
    context: str
    a: str
    b: str
    metric: str
    n_images: int
    diff: float
    boot_lo: float
    boot_hi: float
    p_wilcoxon: float
    n_seeds: int
    seed_lo: float
    seed_hi: float

    @property
    def sign(self) -> int:
        """+1 / -1 when b - a is significantly positive / negative (see the module docstring), else 0."""
        for s in (1, -1):
            boot = self.boot_lo > 0 if s > 0 else self.boot_hi < 0
            seed = np.isnan(self.seed_lo) or (self.seed_lo > 0 if s > 0 else self.seed_hi < 0)
            if boot and seed:
                return s
        return 0

    @property
    def per_image_sign(self) -> int:
        """+1 / -1 when only the per-image bootstrap CI excludes 0 (ignoring the seeds), else 0."""
        return 1 if self.boot_lo > 0 else -1 if self.boot_hi < 0 else 0

    @property
    def printed_zero(self) -> bool:
        """The mean difference rounds to 0 at the metric's printed precision: never reported as a win."""
        return bool(round(abs(self.diff), DECIMALS.get(self.metric, 3)) == 0)

    @property
    def winner(self) -> str | None:
        """The significantly better level, or None (no significant difference, a difference that prints as 0, or a
        metric without a direction)."""
        better = HIGHER_IS_BETTER.get(self.metric)
        if self.sign == 0 or better is None or self.printed_zero:
            return None
        return self.b if (self.sign > 0) == better else self.a


def paired(study: Study, spec: str, axis: str, context: str, a: pd.Series, b: pd.Series, metric: str, *,
           luma: bool, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> Paired:
    """Compare two aggregated variants (rows of `aggregate`) of `spec` on `metric`."""
    key_a, key_b = metric_key(metric, a["channels"], luma), metric_key(metric, b["channels"], luma)
    sa, sb = seed_averaged(study, a["run_dirs"], key_a), seed_averaged(study, b["run_dirs"], key_b)
    if not sa.index.equals(sb.index):
        raise UserError(f"{a['run_dirs'][0]} and {b['run_dirs'][0]} were scored on different test images; "
                        "paired statistics need runs of one spec")
    d = (sb - sa).to_numpy(dtype=float)
    d = d[~np.isnan(d)]
    lo, hi = bootstrap_ci(d, n_boot, seed) if len(d) else (float("nan"), float("nan"))
    runs = study.runs.set_index("run_dir")
    by_seed_a = dict(zip(runs.loc[a["run_dirs"], "seed"], runs.loc[a["run_dirs"], f"{key_a}_mean"], strict=True))
    by_seed_b = dict(zip(runs.loc[b["run_dirs"], "seed"], runs.loc[b["run_dirs"], f"{key_b}_mean"], strict=True))
    common = sorted(set(by_seed_a) & set(by_seed_b))
    seed_lo, seed_hi = t_interval(np.array([by_seed_b[s] - by_seed_a[s] for s in common]))
    return Paired(spec, axis, context, fmt_value(a[f"axis_{axis}"]), fmt_value(b[f"axis_{axis}"]), metric, len(d),
                  float(d.mean()) if len(d) else float("nan"), lo, hi, wilcoxon_p(d), len(common), seed_lo, seed_hi)


@dataclass
class Ablation:
    """One axis of one spec: the aggregated levels per context, every pairwise comparison, and what to bold."""

    spec: str
    axis: str
    luma: bool
    levels: pd.DataFrame  # aggregate rows of this spec, plus `context` and `level`
    pairs: list[Paired]
    bold: set[tuple[str, str, str]]  # (context, level, metric): significantly best


def ablation(study: Study, table: pd.DataFrame, spec: str, axis: str, *, n_boot: int = N_BOOT,
             seed: int = BOOT_SEED) -> Ablation:
    """Compare the levels of `axis` within `spec`, every other axis held fixed (one comparison set per context)."""
    others = [x for x in study.axes(spec) if x != axis]
    rows = table[table["spec"] == spec].copy()
    rows["level"] = [fmt_value(v) for v in rows[f"axis_{axis}"]]
    rows["context"] = [", ".join(f"{o}={fmt_value(r[f'axis_{o}'])}" for o in others) or "-" for _, r in rows.iterrows()]
    order = {c: i for i, c in enumerate(dict.fromkeys(rows["context"]))}
    rows = rows.sort_values("context", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)
    luma = mixes_channels(table, spec)
    pairs: list[Paired] = []
    bold: set[tuple[str, str, str]] = set()
    for context, group in rows.groupby("context", sort=False):
        items = list(group.iterrows())
        found = {}
        for i, (_, ra) in enumerate(items):
            for _, rb in items[i + 1 :]:
                for m in METRICS:
                    p = paired(study, spec, axis, str(context), ra, rb, m, luma=luma, n_boot=n_boot, seed=seed)
                    pairs.append(p)
                    found[(p.a, p.b, m)] = p
        for m in METRICS:
            better = HIGHER_IS_BETTER.get(m)
            if better is None or len(items) < 2:
                continue
            values = {r["level"]: r[metric_key(m, r["channels"], luma)] for _, r in items}
            best = max(values, key=lambda k: values[k]) if better else min(values, key=lambda k: values[k])
            wins = [(found.get((best, o, m)) or found[(o, best, m)]).winner == best for o in values if o != best]
            best_row = next(r for _, r in items if r["level"] == best)
            if all(wins) and beats_fill(best_row, m, luma) is not False:  # never bold a level the fill alone matches
                bold.add((str(context), best, m))
    return Ablation(spec, axis, luma, rows, pairs, bold)
