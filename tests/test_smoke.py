"""`cebench.smoke.check`, the margins `nox -s smoke` asks of the quickstart, on hand-made results tables."""

from __future__ import annotations

from typing import Any

import pandas as pd

from cebench.config import DataConfig, Variant
from cebench.smoke import METRIC_COLUMNS, PSNR_MARGIN_DB, RUN_COLUMNS, SHARPNESS_MARGIN, check


def row(loss: str, psnr: float, sharpness: float, **variant: Any) -> dict[str, Any]:
    """A results row of a run that beats its references by `psnr` - 14 dB (fill at 14, untrained at 13)."""
    v = Variant(loss=loss, **variant)
    out: dict[str, Any] = dict.fromkeys(RUN_COLUMNS + METRIC_COLUMNS, 0.0)
    out |= v.model_dump() | {f"data_{k}": x for k, x in DataConfig().model_dump().items()}
    out |= {"run_id": f"loss={loss}", "seed": 0, "psnr_mean": psnr, "l1_mean": 5.0, "sharpness_mean": sharpness,
            "fill_psnr_mean": 14.0, "fill_l1_mean": 14.0, "untrained_psnr_mean": 13.0, "untrained_l1_mean": 19.0}
    return out


def test_runs_that_learn_pass() -> None:
    assert check(pd.DataFrame([row("l2", 20.9, 0.72), row("joint", 20.6, 0.87)])) == []


def test_a_run_too_close_to_the_fill_fails() -> None:
    psnr = 14.0 + PSNR_MARGIN_DB - 0.01
    problems = check(pd.DataFrame([row("l2", psnr, 0.72), row("joint", 20.6, 0.87)]))
    assert problems == [f"loss=l2: PSNR {psnr:.2f} does not beat fill (14.00) by {PSNR_MARGIN_DB:g} dB"]


def test_a_joint_run_no_sharper_than_l2_fails() -> None:
    problems = check(pd.DataFrame([row("l2", 20.9, 0.80), row("joint", 20.6, 0.80 + SHARPNESS_MARGIN - 0.01)]))
    assert len(problems) == 1 and problems[0].startswith("loss=joint: sharpness 0.840 is not")


def test_sharpness_is_compared_only_between_runs_differing_in_loss_alone() -> None:
    # An L2 run of another width is not the joint run's counterpart; an L2 run alone has none.
    assert check(pd.DataFrame([row("l2", 20.9, 0.95, width=32), row("joint", 20.6, 0.87)])) == []
    assert check(pd.DataFrame([row("l2", 20.9, 0.72)])) == []
