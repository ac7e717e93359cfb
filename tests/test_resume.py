"""A resumed run's training time, hence its images/s: the time spent training before the interruption plus the time
spent training after it; neither the restart in between nor validation and checkpoint writes count."""

from __future__ import annotations

import time
from pathlib import Path

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

    # Each epoch record's images_per_s is its images over its training time; the resumed epoch's record covers the
    # steps after the restart only. So the time of a record is images / images_per_s.
    def record_s(e: int, images: int) -> float:
        return images / resumed.history[e]["images_per_s"]

    first_epoch_s = record_s(0, STEPS * BATCH)
    after = record_s(epoch, (STEPS - step) * BATCH) + sum(record_s(e, STEPS * BATCH) for e in range(epoch + 1, EPOCHS))
    if cut == "mid-epoch":
        assert before > first_epoch_s * (1 + 1e-6)  # epoch 1 and the two steps of epoch 2 finished before the Ctrl-C
    else:
        assert before == pytest.approx(first_epoch_s, rel=1e-9)
    assert resumed.train_time_s == pytest.approx(before + after, rel=1e-9)
    assert resumed.train_time_s < wall_before + wall_after  # the 0.5 s restart is not in it
    assert resumed.images_seen == EPOCHS * STEPS * BATCH
    assert resumed.images_per_s == pytest.approx(resumed.images_seen / resumed.train_time_s, rel=1e-12)
