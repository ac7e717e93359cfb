"""Run folders round trip: weights (generator and critic apart), training state, and the run's variant, data and seed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cebench.checkpoint import (
    RUN,
    WEIGHTS,
    load_state,
    load_weights,
    read_run_config,
    save_state,
    save_weights,
    write_run_config,
)
from cebench.config import DataConfig
from cebench.errors import UserError
from cebench.registry import create_variant
from cebench.task import Task
from tests.conftest import TINY


def test_weights_round_trip_generator_and_critic_apart(tmp_path: Path) -> None:
    task = Task(create_variant("landscape2023", **TINY))
    torch.manual_seed(0)
    generator, critic = task.build_generator(), task.build_discriminator()
    assert critic is not None
    save_weights(tmp_path / WEIGHTS, generator, critic)
    stored = load_file(str(tmp_path / WEIGHTS))
    assert {k for k in stored if k.startswith("G.")} == {f"G.{k}" for k in generator.state_dict()}
    assert {k for k in stored if k.startswith("D.")} == {f"D.{k}" for k in critic.state_dict()}

    torch.manual_seed(1)
    generator2, critic2 = task.build_generator(), task.build_discriminator()
    assert critic2 is not None
    load_weights(tmp_path / WEIGHTS, generator2, critic2)
    for a, b in ((generator, generator2), (critic, critic2)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    torch.manual_seed(2)
    alone = task.build_generator()
    load_weights(tmp_path / WEIGHTS, alone)  # `eval` and `inpaint` need the generator only
    assert all(torch.equal(alone.state_dict()[k], generator.state_dict()[k]) for k in generator.state_dict())

    save_weights(tmp_path / "g.safetensors", generator, None)
    assert not any(k.startswith("D.") for k in load_file(str(tmp_path / "g.safetensors")))


def test_state_loads_with_weights_only(tmp_path: Path) -> None:
    state = {"epoch": 3, "rng": torch.Generator().manual_seed(5).get_state(), "history": [{"loss_rec": 0.5}]}
    save_state(tmp_path / "state.pt", state)
    loaded = load_state(tmp_path / "state.pt")
    assert loaded["epoch"] == 3 and loaded["history"] == [{"loss_rec": 0.5}]
    assert torch.equal(loaded["rng"], state["rng"])
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "pickled.pt")  # arbitrary objects are refused
    with pytest.raises(UserError, match=r"checkpoint refused: it holds Python objects"):
        load_state(tmp_path / "pickled.pt")


def test_run_config_round_trip(tmp_path: Path) -> None:
    variant = create_variant("pathak2016_l2", **TINY, channels="gray")
    data = DataConfig(name="folder", path=tmp_path / "images", n_train=64, n_val=16, n_test=8)  # a Path field
    (tmp_path / WEIGHTS).write_bytes(b"")  # read_run_config asks for both files of a trained run
    write_run_config(tmp_path, variant, data, seed=7)
    assert read_run_config(tmp_path) == (variant, data, 7)
    (tmp_path / WEIGHTS).unlink()
    with pytest.raises(UserError, match=f"not a trained run.*{RUN}.*{WEIGHTS}"):
        read_run_config(tmp_path)
    with pytest.raises(UserError, match="not a trained run"):
        read_run_config(tmp_path / "missing")
