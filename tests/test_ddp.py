"""One run over several processes (`torchrun --nproc-per-node N -m cebench run`), on CPU with gloo: the shards and
draws of each rank, the two-process run against the one-process run with the same global batch, a kill and resume,
and the bad inputs.

Tolerances. Each rank draws the random numbers of the whole global batch and keeps its part, the loss is normalised
by the global batch's hole area and the gradients are averaged, so two processes compute the one-process gradient
exactly but for two things: the order of float sums (all-reduce, one thread per rank instead of two), and BatchNorm,
which normalises over each rank's 8 images instead of the batch's 16. With BatchNorm's statistics fixed (the
`no-batch-stats` fault of tests/inject.py: the layers become per-channel affine maps), the metrics and losses must
agree to float32 rounding amplified over a few steps: relative 1e-5 (measured: 5e-8). With real BatchNorm the two
runs train different (equally valid) networks; their mean hole metrics must then agree within one standard error of
the metric over the test images (std / sqrt(n_test)): closer than the test set can tell two runs apart (measured:
0.01-0.03 dB of PSNR against a standard error of 0.39 dB).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

import cebench.distributed
from cebench.cli import app
from cebench.data.folder import crop_batch, crop_draws
from cebench.masks import make_masks
from tests.conftest import TINY
from tests.inject import no_batch_stats

ROOT = Path(__file__).resolve().parent.parent
SPEC: dict[str, Any] = {
    "name": "ddp",
    "preset": "landscape2023",
    "data": {"name": "landscapes", "n_train": 64, "n_val": 16, "n_test": 16, "seed": 3},
    # The joint loss exercises the critic's gradients too; Pathak's learning rates so that 8 steps move the weights.
    "overrides": {**TINY, "overlap": 2, "loss": "joint", "lr_g": 2e-3, "lr_d": 2e-4},
    "seeds": [0],
}
RUN = "landscape2023-seed0"
METRICS = ("l1", "l2", "psnr", "ssim")
LOSSES = ["loss_rec", "loss_adv", "loss_d", "val_psnr", "val_l1"]


def write_spec(folder: Path) -> Path:
    path = folder / "ddp.yaml"
    path.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    return path


def torchrun(*args: str | Path, fault: tuple[str, ...] | None = None) -> subprocess.CompletedProcess[str]:
    """`cebench` (or tests.inject with `fault`) under torchrun with two CPU processes; --standalone picks a free port."""
    module = ["-m", "cebench"] if fault is None else ["-m", "tests.inject", *fault, "--"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *module,
               *map(str, args), "--device", "cpu"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def one_process(spec: Path, out: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output


def row_and_history(out: Path) -> tuple[pd.Series, pd.DataFrame]:
    table = pd.read_csv(out / "ddp" / "results.csv")
    assert list(table["run_id"]) == [RUN]
    return table.iloc[0], pd.read_csv(out / "ddp" / RUN / "history.csv")


def as_ranks(monkeypatch: pytest.MonkeyPatch, rank: int, world: int) -> None:
    monkeypatch.setattr(cebench.distributed, "rank", lambda: rank)
    monkeypatch.setattr(cebench.distributed, "world_size", lambda: world)


# ----------------------------------------------------------------------------------------------------------------------
# Shards and draws: each rank's part of the global batch, exactly


def test_shards_are_disjoint_and_cover_each_global_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    order = torch.randperm(70, generator=torch.Generator().manual_seed(0))  # 4 batches of 16, 6 dropped
    shards = []
    for rank in range(2):
        as_ranks(monkeypatch, rank, 2)
        shards.append(cebench.distributed.shard(order, 16).view(4, 8))
    for step in range(4):
        together = torch.cat([shards[0][step], shards[1][step]])
        assert torch.equal(together, order[step * 16 : (step + 1) * 16])  # rank 0 then rank 1: the global batch
    as_ranks(monkeypatch, 0, 1)
    assert cebench.distributed.shard(order, 16) is order


def test_each_rank_keeps_its_part_of_the_global_batchs_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    images = torch.randint(0, 256, (20, 3, 40, 40), dtype=torch.uint8)
    idx = torch.arange(8)

    def draws(ranks: int) -> torch.Tensor:
        rng = torch.Generator().manual_seed(5)
        keep = cebench.distributed.part(len(idx) // ranks)
        crop_u = crop_draws(len(idx), 40, 40, 32, rng, torch.device("cpu"), keep)
        return crop_batch(images, idx[keep], 32, train=True, generator=None, draws=crop_u)

    as_ranks(monkeypatch, 0, 1)
    whole = draws(1)
    parts = []
    for rank in range(2):
        as_ranks(monkeypatch, rank, 2)
        parts.append(draws(2))
    assert torch.equal(torch.cat(parts), whole)  # the crops: positions and flips
    masks = make_masks("block", 8, 32, 2, torch.Generator().manual_seed(1))
    assert torch.equal(torch.cat([masks[0:4].hole, masks[4:8].hole]), masks.hole)


# ----------------------------------------------------------------------------------------------------------------------
# Two processes against one


@pytest.mark.slow
def test_two_processes_killed_and_resumed_match_one_process_without_batch_statistics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_spec(tmp_path)
    monkeypatch.setattr(nn, "BatchNorm2d", nn.BatchNorm2d)  # restored after the test
    no_batch_stats()
    one_process(spec, tmp_path / "one")
    # Rank 0 is SIGKILLed once the first epoch's checkpoint is on disk; torchrun then stops rank 1.
    killed = torchrun("run", spec, "--out", tmp_path / "two",
                      fault=("checkpoint-every-epoch", "no-batch-stats", "kill-after", "state.pt", "1"))
    assert killed.returncode != 0 and not (tmp_path / "two" / "ddp" / "results.csv").exists(), killed.stderr
    resumed = torchrun("run", spec, "--out", tmp_path / "two", "--resume", fault=("no-batch-stats",))
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed after 1 epochs" in (tmp_path / "two" / "ddp" / RUN / "train.log").read_text()

    (one, one_history), (two, two_history) = row_and_history(tmp_path / "one"), row_and_history(tmp_path / "two")
    assert (one["world_size"], one["devices"]) == (1, "cpu") and (two["world_size"], two["devices"]) == (2, "cpu,cpu")
    columns = [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
    np.testing.assert_allclose(two[columns].astype(float), one[columns].astype(float), rtol=1e-5)
    np.testing.assert_allclose(two_history[LOSSES], one_history[LOSSES], rtol=1e-5)
    assert one["psnr_mean"] > one["untrained_psnr_mean"] + 0.5  # trained: the comparison is not of two inits


@pytest.mark.slow
def test_two_processes_match_one_process_within_a_standard_error_with_batchnorm(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    one_process(spec, tmp_path / "one")
    done = torchrun("run", spec, "--out", tmp_path / "two")
    assert done.returncode == 0, done.stderr
    one, two = row_and_history(tmp_path / "one")[0], row_and_history(tmp_path / "two")[0]
    assert two["world_size"] == 2 and two["status"] == "ok"
    for m in METRICS:
        standard_error = one[f"{m}_std"] / math.sqrt(one["n_test"])
        assert abs(two[f"{m}_mean"] - one[f"{m}_mean"]) <= standard_error, m
    # Only rank 0 wrote: one row, one log line per epoch, no second copy of anything.
    log = (tmp_path / "two" / "ddp" / RUN / "train.log").read_text()
    assert log.count("epoch=1 ") == 1 and "on cpu,cpu" in log


# ----------------------------------------------------------------------------------------------------------------------
# Bad input under torchrun: one line from rank 0, exit 2; the other ranks exit 2 quietly (checked before the process
# group starts, so torchrun's variables alone reproduce it)


@pytest.mark.parametrize(("args", "changes", "needle"), [
    (["--devices", "cpu,cpu"], {}, "--devices with torchrun"),
    (["--storage", "journal:x.log"], {}, "--storage with torchrun"),
    (["--device", "cuda:1"], {}, "each process takes cuda:LOCAL_RANK"),
    ([], {"batch_size": 15}, "batch_size 15 does not split over 2 processes"),
])
@pytest.mark.parametrize("rank", [0, 1])
def test_bad_input_under_torchrun_is_one_line_from_rank_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], changes: dict[str, Any], needle: str, rank: int
) -> None:
    changed = {**SPEC, "overrides": {**SPEC["overrides"], **changes}}
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(changed))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", str(rank))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "ddp.yaml"), "--out", str(tmp_path / "runs"), *args])
    assert result.exit_code == 2, result.output
    if rank == 0:
        assert result.output.count("error:") == 1 and needle in result.output and "Traceback" not in result.output
    else:
        assert result.output == ""
    assert not (tmp_path / "runs").exists()
