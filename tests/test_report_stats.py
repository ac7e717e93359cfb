"""The report's statistics (cebench.report.stats) against scipy, on results folders as `cebench run` writes them, with
data that can tell a right statistic from a near miss: seeds that disagree with the per-image differences (the two
halves of the significance rule), mixed signs (two-sided Wilcoxon), outliers (a bootstrap that draws every image).
No figures or documents are made, so `nox -s mutation` can run these for every mutant of stats.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cebench.errors import UserError
from cebench.report.load import Study, load
from cebench.report.stats import (
    METRICS,
    Ablation,
    ablation,
    aggregate,
    bootstrap_ci,
    seed_averaged,
    t_interval,
    wilcoxon_p,
)
from cebench.report.tables import verdict
from tests.test_report import BASE, JITTER, N_IMAGES, effect, scores_from_psnr, seed_noise, write_spec

SEEDS = (0, 1, 2)
# Per seed, loss=joint minus l2 on every image: the seeds disagree in sign, the per-image differences do not cancel.
SEED_EFFECT = {0: 1.0, 1: -0.6, 2: 0.2}
IMAGE_EFFECT = np.random.default_rng(11).normal(0.0, 0.25, N_IMAGES)  # mixed signs around the mean effect of 0.2


def seeds_disagree(point: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
    if point["loss"] == "joint":
        return scores_from_psnr(BASE + SEED_EFFECT[seed] + IMAGE_EFFECT)
    return scores_from_psnr(BASE.copy())


def study_of(root: Path, name: str, axes: dict[str, list[Any]], scores: Any) -> tuple[Study, pd.DataFrame]:
    study = load([write_spec(root, name, axes, list(SEEDS), scores)])
    return study, aggregate(study)


@pytest.fixture(scope="module")
def disagree(tmp_path_factory: pytest.TempPathFactory) -> Ablation:
    study, table = study_of(tmp_path_factory.mktemp("disagree"), "dis", {"loss": ["l2", "joint"]}, seeds_disagree)
    return ablation(study, table, "dis", "loss")


@pytest.fixture(scope="module")
def effect_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Study, pd.DataFrame]:
    return study_of(tmp_path_factory.mktemp("effect"), "syn", {"loss": ["l2", "joint"]}, effect)


def per_image_psnr(study: Study, level: str) -> np.ndarray:
    """Seed-averaged per-image PSNR of one level, read back from the per_image.csv files."""
    runs = study.runs[study.runs["axis_loss"] == level]
    return np.mean([pd.read_csv(Path(d) / "per_image.csv")["psnr"] for d in runs["run_dir"]], axis=0)


def test_per_image_significance_alone_is_not_significant(disagree: Ablation) -> None:
    """The rule's second half: the per-image CI excludes 0 but the CI over seeds does not, so nothing is bold."""
    d = np.mean([SEED_EFFECT[s] + IMAGE_EFFECT for s in SEEDS], axis=0)  # seed-averaged per-image difference
    boot = stats.bootstrap((d,), np.mean, method="percentile", n_resamples=10_000, rng=np.random.default_rng(5))
    seed_d = np.array([SEED_EFFECT[s] for s in SEEDS]) + IMAGE_EFFECT.mean()  # differences of the test-set means
    seed_lo, seed_hi = stats.t.interval(0.95, len(seed_d) - 1, loc=seed_d.mean(), scale=stats.sem(seed_d))
    assert boot.confidence_interval.low > 0.1 and seed_lo < 0 < seed_hi  # what the fixture is built to show

    for p in disagree.pairs:  # every metric moves with PSNR here
        assert p.per_image_sign != 0 and p.sign == 0 and p.winner is None, p.metric
        assert (p.seed_lo, p.seed_hi) != pytest.approx((0.0, 0.0))
    psnr = next(p for p in disagree.pairs if p.metric == "psnr")
    assert psnr.boot_lo > 0 and (psnr.seed_lo, psnr.seed_hi) == pytest.approx((seed_lo, seed_hi), rel=1e-9)
    assert verdict("loss", psnr).startswith("not significant over seeds")
    assert disagree.bold == set()


def test_seed_significance_alone_is_not_significant(tmp_path: Path) -> None:
    """The rule's first half: every seed agrees on a small gain, but the images scatter around it (the per-image CI
    spans 0), so nothing is significant."""
    scatter = np.random.default_rng(12).normal(0.0, 1.0, N_IMAGES)
    scatter -= scatter.mean()

    def seed_only(point: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
        gain = 0.05 + 0.002 * seed if point["loss"] == "joint" else 0.0
        return scores_from_psnr(BASE + gain + (scatter if point["loss"] == "joint" else 0.0))

    study, table = study_of(tmp_path, "seed", {"loss": ["l2", "joint"]}, seed_only)
    ab = ablation(study, table, "seed", "loss")
    psnr = next(p for p in ab.pairs if p.metric == "psnr")
    assert psnr.seed_lo > 0 and psnr.boot_lo < 0 < psnr.boot_hi  # what the fixture is built to show
    assert psnr.sign == 0 and psnr.per_image_sign == 0 and psnr.winner is None
    assert ab.bold == set()


def test_wilcoxon_is_two_sided_on_mixed_signs(disagree: Ablation) -> None:
    """Mixed-sign differences: p is not the 2 / 2^n floor every all-positive vector gets, and one-sided is half of it."""
    d = np.mean([BASE + SEED_EFFECT[s] + IMAGE_EFFECT for s in SEEDS], axis=0) - BASE
    assert (d < 0).sum() >= 3 and (d > 0).sum() >= 3
    expected = stats.wilcoxon(d).pvalue
    assert expected > 1e3 * 2.0**-N_IMAGES  # far above the floor
    psnr = next(p for p in disagree.pairs if p.metric == "psnr")
    assert psnr.p_wilcoxon == pytest.approx(expected, rel=1e-6, abs=0)  # d is read back from CSV: ~1e-15 off
    assert psnr.p_wilcoxon != pytest.approx(stats.wilcoxon(d, alternative="greater").pvalue, rel=0.1)
    assert wilcoxon_p(np.zeros(5)) == 1.0 and wilcoxon_p(np.array([])) == 1.0


def test_paired_and_aggregate_match_scipy(effect_study: tuple[Study, pd.DataFrame]) -> None:
    """loss=joint is 1 dB better on every image and seed: every statistic against scipy, both halves significant."""
    study, table = effect_study
    ab = ablation(study, table, "syn", "loss")
    d = per_image_psnr(study, "joint") - per_image_psnr(study, "l2")
    p = next(p for p in ab.pairs if p.metric == "psnr")
    assert (p.a, p.b, p.n_images, p.n_seeds) == ("l2", "joint", N_IMAGES, len(SEEDS))
    assert p.diff == pytest.approx(d.mean(), rel=1e-12)
    assert p.p_wilcoxon == pytest.approx(stats.wilcoxon(d).pvalue, rel=1e-9, abs=0)  # 2 / 2^40: one-sided is half
    # cebench's endpoints (10,000 resamples) spread by sd 0.0009 (lower) and 0.0012 (upper) over RNG seeds 0-99; scipy's
    # with 100,000 resamples by a third of that: 0.005 is about 4 sd of their difference.
    boot = stats.bootstrap((d,), np.mean, method="percentile", n_resamples=100_000, rng=np.random.default_rng(5))
    assert (p.boot_lo, p.boot_hi) == pytest.approx((boot.confidence_interval.low, boot.confidence_interval.high), abs=5e-3)
    seed_d = np.array([np.mean(BASE + 1.0 + JITTER + 1.5 * seed_noise(s)) - np.mean(BASE + seed_noise(s)) for s in SEEDS])
    lo, hi = stats.t.interval(0.95, len(seed_d) - 1, loc=seed_d.mean(), scale=stats.sem(seed_d))
    assert (p.seed_lo, p.seed_hi) == pytest.approx((lo, hi), rel=1e-9)
    assert p.sign == 1 and p.winner == "joint"
    again = next(q for q in ablation(study, table, "syn", "loss").pairs if q.metric == "psnr")
    reseeded = next(q for q in ablation(study, table, "syn", "loss", seed=1).pairs if q.metric == "psnr")
    assert (again.boot_lo, again.boot_hi) == (p.boot_lo, p.boot_hi) != (reseeded.boot_lo, reseeded.boot_hi)
    # Lower is better for L1 and L2: joint wins those too, with the opposite sign; sharpness has no better direction.
    by_metric = {q.metric: q for q in ab.pairs}
    assert [by_metric[m].sign for m in METRICS] == [-1, -1, 1, 1, 1]
    assert [by_metric[m].winner for m in METRICS] == ["joint", "joint", "joint", "joint", None]
    assert ab.bold == {("-", "joint", m) for m in ("l1", "l2", "psnr", "ssim")}

    runs = study.runs
    for level, row in table.set_index("axis_loss").iterrows():
        values = runs.loc[runs["axis_loss"] == level, "psnr_mean"].to_numpy()
        lo, hi = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
        assert (row["psnr"], row["psnr_sd"], row["psnr_lo"], row["psnr_hi"]) == pytest.approx(
            (values.mean(), values.std(ddof=1), lo, hi), rel=1e-12)
        assert row["n_seeds"] == len(SEEDS) and row["seeds"] == list(SEEDS)


@pytest.mark.parametrize(("top", "bold"), [(1.5, True), (1.0, False)], ids=["clear-best", "tie-at-the-top"])
def test_three_levels_bold_the_level_that_beats_every_other(top: float, bold: bool, tmp_path: Path) -> None:
    tie = np.random.default_rng(3).normal(0.0, 0.3, N_IMAGES)

    def three(point: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
        shift = {8: 0.0, 16: 1.0, 32: top}[point["width"]]
        noise = tie - tie.mean() if point["width"] == 16 else 0.0  # 16 vs 32 at top=1.0: a zero-mean difference
        return scores_from_psnr(BASE + 0.1 * JITTER + seed_noise(seed) + shift + noise)

    study, table = study_of(tmp_path, "three", {"width": [8, 16, 32]}, three)
    ab = ablation(study, table, "three", "width")
    assert len(ab.pairs) == 3 * len(METRICS)
    winners = {(p.a, p.b): p.winner for p in ab.pairs if p.metric == "psnr"}
    assert winners == {("8", "16"): "16", ("8", "32"): "32", ("16", "32"): "32" if bold else None}
    assert {(level, m) for _, level, m in ab.bold} == ({("32", m) for m in ("l1", "l2", "psnr", "ssim")} if bold else set())


@pytest.mark.parametrize("levels", [["rgb", "gray"], ["gray", "rgb"]])
def test_channels_axis_compares_gray_with_the_luma_of_rgb(levels: list[str], tmp_path: Path) -> None:
    def colour(point: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
        if point["channels"] == "gray":
            return scores_from_psnr(BASE + seed_noise(seed) + 2.0)
        return scores_from_psnr(BASE + seed_noise(seed) + 9.0, luma=BASE + seed_noise(seed))  # RGB 9 dB, luma 0

    study, table = study_of(tmp_path, "col", {"channels": levels}, colour)
    ab = ablation(study, table, "col", "channels")
    psnr = next(p for p in ab.pairs if p.metric == "psnr")
    assert ab.luma and [psnr.a, psnr.b] == levels
    sign = 1 if levels[1] == "gray" else -1
    assert psnr.diff == pytest.approx(sign * 2.0, rel=1e-12)  # gray - luma(rgb), not gray - rgb (-7)
    assert ("-", "gray", "psnr") in ab.bold
    other = ablation(*study_of(tmp_path / "w", "w", {"width": [8, 16]}, effect_by_width), "w", "width")
    assert not other.luma and next(p for p in other.pairs if p.metric == "psnr").diff == pytest.approx(1.0, rel=1e-9)


def effect_by_width(point: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
    """Colour runs on another axis: compared in RGB (1 dB apart), not in luma (equal)."""
    return scores_from_psnr(BASE + seed_noise(seed) + (1.0 if point["width"] == 16 else 0.0), luma=BASE.copy())


def test_aggregate_with_two_seeds_one_seed_and_a_metric_never_scored(tmp_path: Path) -> None:
    def unscored_ssim(point: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
        out = scores_from_psnr(BASE + seed_noise(seed) + point["width"] / 8)
        return out | {"ssim": np.full(N_IMAGES, np.nan)}  # e.g. an SSIM window larger than every hole

    study = load([write_spec(tmp_path, "two", {"width": [8, 16]}, [0, 1], unscored_ssim)])
    table = aggregate(study)
    assert list(table["variant"]) == ["width=8", "width=16"] and list(table["spec"]) == ["two", "two"]
    row = table.iloc[1]
    values = study.runs.loc[study.runs["variant"] == "width=16", "psnr_mean"].to_numpy()
    assert (row["psnr"], row["psnr_sd"]) == pytest.approx((values.mean(), values.std(ddof=1)), rel=1e-12)
    assert np.isnan(row["ssim"]) and np.isnan(row["ssim_sd"]) and np.isnan(row["ssim_lo"])
    assert row["run_id"] == "width=16-seed0" and row["seeds"] == [0, 1] and row["n_seeds"] == 2

    ssim = next(p for p in ablation(study, table, "two", "width").pairs if p.metric == "ssim")
    assert ssim.n_images == 0 and np.isnan(ssim.diff) and np.isnan(ssim.boot_lo) and ssim.sign == 0

    one = aggregate(load([write_spec(tmp_path, "one", {"width": [8]}, [3], unscored_ssim)])).iloc[0]
    assert one["n_seeds"] == 1 and one["psnr"] == pytest.approx(float(np.mean(BASE + seed_noise(3) + 1)), rel=1e-12)
    assert np.isnan(one["psnr_sd"]) and np.isnan(one["psnr_lo"]) and np.isnan(one["psnr_hi"])


def test_seed_averaged_means_the_seeds_and_refuses_mismatched_runs(tmp_path: Path) -> None:
    spec_dir = write_spec(tmp_path, "s", {"loss": ["l2", "joint"]}, [0, 1], effect)
    study = load([spec_dir])
    dirs = list(study.runs.loc[study.runs["axis_loss"] == "joint", "run_dir"])
    per_run = [pd.read_csv(Path(d) / "per_image.csv")["psnr"].to_numpy() for d in dirs]
    got = seed_averaged(study, dirs, "psnr")
    assert list(got.index) == list(range(N_IMAGES)) and got.to_numpy() == pytest.approx(np.mean(per_run, axis=0))
    assert seed_averaged(study, dirs[:1], "psnr").to_numpy() == pytest.approx(per_run[0], rel=1e-15)
    with pytest.raises(UserError, match=r"per_image.csv: no column 'luma_psnr'"):
        seed_averaged(study, dirs, "luma_psnr")
    table = pd.read_csv(Path(dirs[1]) / "per_image.csv")
    table.iloc[:-1].to_csv(Path(dirs[1]) / "per_image.csv", index=False)  # the second seed scored one image fewer
    with pytest.raises(UserError, match="seed0 and the other seeds of its variant scored different test images"):
        seed_averaged(load([spec_dir]), dirs, "psnr")


def test_paired_refuses_levels_scored_on_different_images(tmp_path: Path) -> None:
    spec_dir = write_spec(tmp_path, "s", {"loss": ["l2", "joint"]}, [0, 1], effect)
    for seed in (0, 1):  # both seeds of one level scored one image fewer: consistent within the level, not across
        path = spec_dir / f"loss=joint-seed{seed}" / "per_image.csv"
        pd.read_csv(path).iloc[:-1].to_csv(path, index=False)
    study = load([spec_dir])
    with pytest.raises(UserError, match=r"loss=l2-seed0 and .*loss=joint-seed0 were scored on different test images; "
                                        r"paired statistics need runs of one spec"):
        ablation(study, aggregate(study), "s", "loss")


def test_t_interval_matches_scipy() -> None:
    values = np.array([1.0, 2.5, 2.0, 4.0])
    lo, hi = stats.t.interval(0.9, 3, loc=values.mean(), scale=stats.sem(values))
    assert t_interval(values, 0.9) == pytest.approx((lo, hi), rel=1e-12)
    assert t_interval(np.array([1.0, np.nan, 2.5, 2.0, 4.0]), 0.9) == pytest.approx((lo, hi), rel=1e-12)
    assert all(np.isnan(t_interval(np.array([3.0]))))


# Spread of the percentile endpoints of cebench's 10,000-resample bootstrap on the outlier data below, over RNG seeds
# 0-99: sd 0.009 (lower) and 0.012 (upper); seed 0 lies 0.003 and 0.005 from scipy's 100,000-resample interval. A
# bootstrap that never draws the first image moves the upper endpoint by 0.55, one that never draws the last moves
# the lower one by 0.38, so 0.05 (about 4 sd) tells them apart.
BOOT_TOL = 0.05


def test_bootstrap_resamples_every_image() -> None:
    """Outliers at both ends of the vector: a bootstrap that never draws the first or the last image is far off."""
    rng = np.random.default_rng(4)
    d = np.concatenate([[10.0], rng.normal(0.0, 1.0, N_IMAGES - 2), [-8.0]])
    ref = stats.bootstrap((d,), np.mean, method="percentile", n_resamples=100_000, rng=np.random.default_rng(1))
    assert bootstrap_ci(d) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high), abs=BOOT_TOL)
    ref90 = stats.bootstrap((d,), np.mean, method="percentile", n_resamples=100_000, confidence_level=0.9,
                            rng=np.random.default_rng(1))
    assert bootstrap_ci(d, level=0.9) == pytest.approx((ref90.confidence_interval.low, ref90.confidence_interval.high),
                                                       abs=BOOT_TOL)
