"""A resumed run's training time, hence its images/s: the time spent training before the interruption plus the time
spent training after it; neither the restart in between, the warm-up step of each fit (timed apart), nor validation
and checkpoint writes count."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch

import cebench.train
from cebench.checkpoint import STATE, load_state
from cebench.data.source import load_split
from cebench.registry import create_variant
from cebench.train import fit
from tests.conftest import TINY, TINY_DATA
from tests.test_train import sigint_on_call

EPOCHS, STEPS, BATCH = 2, 4, 16  # TINY: 64 training images in batches of 16


@pytest.mark.parametrize("cut", ["mid-epoch", "after-epoch"])
def test_resumed_train_time_is_the_time_trained_before_and_after(cut: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    train, val = load_split(TINY_DATA, "train", 32, cpu), load_split(TINY_DATA, "val", 32, cpu)
    v = create_variant("pathak2016_l2", **{**TINY, "epochs": EPOCHS})
    assert (len(train) // v.batch_size, v.batch_size) == (STEPS, BATCH)

    def stop_after_first(epoch: int, record: dict[str, float]) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    if cut == "mid-epoch":  # Ctrl-C during epoch 2, step 2
        monkeypatch.setattr(cebench.train, "fill_holes", sigint_on_call(cebench.train, "fill_holes", call=STEPS + 1))
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        fit(v, train, val, seed=0, run_dir=tmp_path, checkpoint_every_s=0,
            on_epoch=stop_after_first if cut == "after-epoch" else None)
    wall_before = time.perf_counter() - t0
    monkeypatch.undo()
    state = load_state(tmp_path / STATE)
    epoch, step, before = int(state["epoch"]), int(state["step"]), float(state["train_time_s"])
    assert (epoch, step) == ((1, 2) if cut == "mid-epoch" else (1, 0))
    time.sleep(0.5)  # the restart: not training time
    t0 = time.perf_counter()
    resumed = fit(v, train, val, seed=0, run_dir=tmp_path, resume=True)
    wall_after = time.perf_counter() - t0

    # Each epoch record's images_per_s is its timed images over its training time; the first step of each fit call is
    # warm-up (timed apart), and the resumed epoch's record covers the steps after the restart only. So the time of a
    # record is its timed images / images_per_s.
    def record_s(e: int, steps: int) -> float:
        return steps * BATCH / resumed.history[e]["images_per_s"]

    first_epoch_s = record_s(0, STEPS - 1)
    after = record_s(epoch, STEPS - step - 1) + sum(record_s(e, STEPS) for e in range(epoch + 1, EPOCHS))
    if cut == "mid-epoch":
        assert before > first_epoch_s * (1 + 1e-6)  # epoch 1 and the two steps of epoch 2 finished before the Ctrl-C
    else:
        assert before == pytest.approx(first_epoch_s, rel=1e-9)
    assert resumed.train_time_s == pytest.approx(before + after, rel=1e-9)
    # One warm-up step per fit call, before and after the restart, each timed apart from training.
    assert state["warmup_images"] == BATCH and resumed.warmup_images == 2 * BATCH
    assert 0 < state["warmup_s"] < resumed.warmup_s
    assert resumed.train_time_s + resumed.warmup_s < wall_before + wall_after  # the 0.5 s restart is in neither
    assert resumed.images_seen == EPOCHS * STEPS * BATCH
    timed = resumed.images_seen - resumed.warmup_images
    assert resumed.images_per_s == pytest.approx(timed / resumed.train_time_s, rel=1e-12)


@pytest.mark.parametrize("slow_call", [1, 3])
def test_the_first_step_of_a_fit_is_warm_up_not_training(slow_call: int, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Seconds spent in the first step (where the fast path compiles) go to warmup_s; in a later step, to training."""
    cpu = torch.device("cpu")
    train = load_split(TINY_DATA, "train", 32, cpu)
    v = create_variant("pathak2016_l2", **{**TINY, "epochs": 1})
    real = cebench.train.fill_holes
    calls = 0

    def slow_fill(*args: Any, **kwargs: Any) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == slow_call:
            time.sleep(3.0)  # far more than the other tiny steps take, even on a loaded machine
        return real(*args, **kwargs)

    monkeypatch.setattr(cebench.train, "fill_holes", slow_fill)
    result = fit(v, train, train[:0], seed=0, run_dir=tmp_path)
    assert result.warmup_images == BATCH and result.images_seen == STEPS * BATCH
    assert (result.warmup_s >= 3.0) == (slow_call == 1)
    assert (result.train_time_s >= 3.0) == (slow_call != 1)
    assert result.history[0]["images_per_s"] == pytest.approx(result.images_per_s, rel=1e-9)  # one epoch: same rate
