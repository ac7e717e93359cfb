"""The report's significance rule, half by half, and its statistics against scipy on data that can tell a right
statistic from a near miss (mixed signs for the Wilcoxon test, outliers for the bootstrap)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cebench.report import report
from cebench.report.stats import bootstrap_ci
from tests.test_report import BASE, N_IMAGES, paired_row, scores_from_psnr, write_spec

# Per seed, loss=joint minus l2 on every image: the seeds disagree in sign, the per-image differences do not cancel.
SEED_EFFECT = {0: 1.0, 1: -0.6, 2: 0.2}
IMAGE_EFFECT = np.random.default_rng(11).normal(0.0, 0.25, N_IMAGES)  # mixed signs around the mean effect of 0.2


def seeds_disagree(point: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
    if point["loss"] == "joint":
        return scores_from_psnr(BASE + SEED_EFFECT[seed] + IMAGE_EFFECT)
    return scores_from_psnr(BASE.copy())


@pytest.fixture(scope="module")
def disagree_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("disagree")
    return report([write_spec(root, "dis", {"loss": ["l2", "joint"]}, [0, 1, 2], seeds_disagree)], root / "out")


def test_per_image_significance_alone_is_not_significant(disagree_report: Path) -> None:
    """The rule's second half: the per-image CI excludes 0 but the CI over seeds does not, so nothing is bold."""
    d = np.mean([SEED_EFFECT[s] + IMAGE_EFFECT for s in SEED_EFFECT], axis=0)  # seed-averaged per-image difference
    boot = stats.bootstrap((d,), np.mean, method="percentile", n_resamples=10_000, rng=np.random.default_rng(5))
    seed_d = np.array(list(SEED_EFFECT.values())) + IMAGE_EFFECT.mean()  # differences of the test-set means
    seed_lo, seed_hi = stats.t.interval(0.95, len(seed_d) - 1, loc=seed_d.mean(), scale=stats.sem(seed_d))
    assert boot.confidence_interval.low > 0.1 and seed_lo < 0 < seed_hi  # what the fixture is built to show

    row = paired_row(disagree_report, "dis_loss", "psnr")
    assert row["boot_lo"] > 0 and (row["seed_lo"], row["seed_hi"]) == pytest.approx((seed_lo, seed_hi), rel=1e-9)
    assert not row["significant"] and pd.isna(row["winner"])
    assert row["verdict"].startswith("not significant over seeds")
    md = (disagree_report / "tables" / "ablation_dis_loss.md").read_text().splitlines()
    assert [line for line in md if line.startswith(("| l2", "| joint"))] and \
        not [line for line in md if line.startswith(("| l2", "| joint")) and "**" in line]


def test_wilcoxon_is_two_sided_on_mixed_signs(disagree_report: Path) -> None:
    """Mixed-sign differences: p is not the 2 / 2^n floor every all-positive vector gets, and one-sided is half of it."""
    spec_dir = disagree_report.parent / "dis"
    per = {lv: np.mean([pd.read_csv(spec_dir / f"loss={lv}-seed{s}" / "per_image.csv")["psnr"] for s in SEED_EFFECT],
                       axis=0) for lv in ("l2", "joint")}
    d = per["joint"] - per["l2"]
    assert (d < 0).sum() >= 3 and (d > 0).sum() >= 3
    expected = stats.wilcoxon(d).pvalue
    assert expected > 1e3 * 2.0**-N_IMAGES  # far above the floor
    row = paired_row(disagree_report, "dis_loss", "psnr")
    assert row["p_wilcoxon"] == pytest.approx(expected, rel=1e-9, abs=0)
    assert row["p_wilcoxon"] != pytest.approx(stats.wilcoxon(d, alternative="greater").pvalue, rel=0.1)


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
