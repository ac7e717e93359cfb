from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import cebench.train
from cebench.checkpoint import STATE, WEIGHTS, load_state
from cebench.data.source import load_split
from cebench.registry import create_variant
from cebench.train import Diverged, fit
from tests.conftest import TINY, TINY_DATA


@pytest.fixture(scope="module")
def splits() -> tuple[torch.Tensor, torch.Tensor]:
    cpu = torch.device("cpu")
    return load_split(TINY_DATA, "train", 32, cpu), load_split(TINY_DATA, "val", 32, cpu)


@pytest.mark.parametrize("preset", ["pathak2016_l2", "landscape2023"])
def test_fit_checkpoints_every_epoch(preset: str, splits: tuple[torch.Tensor, torch.Tensor], tmp_path: Path) -> None:
    v = create_variant(preset, **TINY)
    seen: list[int] = []
    result = fit(v, *splits, seed=0, run_dir=tmp_path, on_epoch=lambda e, rec: seen.append(e))
    assert seen == [1, 2] and len(result.history) == 2
    assert all(torch.isfinite(torch.tensor(r["loss_rec"])) for r in result.history)
    assert "val_psnr" in result.history[-1]
    state = load_state(tmp_path / STATE)  # weights_only=True
    assert state["epoch"] == 2 and (tmp_path / WEIGHTS).is_file()
    assert (state["opt_d"] != {}) == (v.loss == "joint")


def test_same_seed_same_weights_and_resume_matches(splits: tuple[torch.Tensor, torch.Tensor], tmp_path: Path) -> None:
    v = create_variant("landscape2023", **TINY)
    full = fit(v, *splits, seed=1, run_dir=tmp_path / "a").generator.state_dict()
    again = fit(v, *splits, seed=1, run_dir=tmp_path / "b").generator.state_dict()
    assert all(torch.equal(full[k], again[k]) for k in full)

    def stop_after_first(epoch: int, record: dict[str, float]) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(v, *splits, seed=1, run_dir=tmp_path / "c", on_epoch=stop_after_first, checkpoint_every_s=0)
    assert load_state(tmp_path / "c" / STATE)["epoch"] == 1
    # A crash between the two files leaves stale weights beside the state: resuming must not read them.
    (tmp_path / "c" / WEIGHTS).write_bytes((tmp_path / "b" / WEIGHTS).read_bytes())
    resumed = fit(v, *splits, seed=1, run_dir=tmp_path / "c", resume=True)
    assert len(resumed.history) == 2
    state = resumed.generator.state_dict()
    assert all(torch.equal(full[k], state[k]) for k in full)

    other = fit(v, *splits, seed=2, run_dir=tmp_path / "d").generator.state_dict()
    assert not all(torch.equal(full[k], other[k]) for k in full)


@pytest.mark.parametrize(("every_s", "expected"), [(3600, [0, 0, 3]), (0, [1, 2, 3])])
def test_checkpoints_are_spaced_out_in_time(every_s: float, expected: list[int],
                                            splits: tuple[torch.Tensor, torch.Tensor], tmp_path: Path) -> None:
    v = create_variant("pathak2016_l2", **{**TINY, "epochs": 3})
    saved: list[int] = []  # the checkpoint's epoch as each epoch ends (0: none yet)

    def after_epoch(epoch: int, record: dict[str, float]) -> None:
        saved.append(load_state(tmp_path / STATE)["epoch"] if (tmp_path / STATE).is_file() else 0)

    fit(v, *splits, seed=0, run_dir=tmp_path, on_epoch=after_epoch, checkpoint_every_s=every_s)
    assert saved == expected  # the last epoch is always saved


def test_divergence_is_reported(splits: tuple[torch.Tensor, torch.Tensor], tmp_path: Path) -> None:
    v = create_variant("pathak2016_l2", **{**TINY, "lr_g": 1e30, "epochs": 3})
    with pytest.raises(Diverged, match="not finite"):
        fit(v, *splits, seed=0, run_dir=tmp_path)


def test_large_batch_learning_rate_rule() -> None:
    assert create_variant("pathak2016", batch_size=512).lr_factor == 1.0
    assert create_variant("pathak2016", batch_size=256, lr_scaling="sqrt").lr_factor == 2.0
    assert create_variant("pathak2016", batch_size=256, lr_scaling="linear").lr_factor == 4.0


def sigint_on_call(module: Any, name: str, call: int, times: int = 1) -> Callable[..., Any]:
    """Wrap `module.name` so that its `call`-th call (0-based) sends this process `times` SIGINTs, as Ctrl-C would."""
    real, calls = getattr(module, name), itertools.count()

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if next(calls) == call:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    return wrapped


def test_ctrl_c_mid_epoch_keeps_every_finished_step(splits: tuple[torch.Tensor, torch.Tensor], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    v = create_variant("landscape2023", **TINY)  # 4 steps per epoch, 2 epochs
    full = fit(v, *splits, seed=1, run_dir=tmp_path / "full")
    monkeypatch.setattr(cebench.train, "fill_holes", sigint_on_call(cebench.train, "fill_holes", call=5))
    with pytest.raises(KeyboardInterrupt):
        fit(v, *splits, seed=1, run_dir=tmp_path / "cut")  # Ctrl-C during epoch 2, step 2: that step still finishes
    state = load_state(tmp_path / "cut" / STATE)
    assert (state["epoch"], state["step"]) == (1, 2)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    monkeypatch.undo()
    resumed = fit(v, *splits, seed=1, run_dir=tmp_path / "cut", resume=True)
    weights, again = full.generator.state_dict(), resumed.generator.state_dict()
    assert all(torch.equal(weights[k], again[k]) for k in weights)
    assert [r["loss_rec"] for r in resumed.history] == [r["loss_rec"] for r in full.history]
    assert resumed.images_seen == full.images_seen


def test_ctrl_c_in_the_last_validation_still_saves_the_run(splits: tuple[torch.Tensor, torch.Tensor], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    v = create_variant("pathak2016_l2", **TINY)
    monkeypatch.setattr(cebench.train, "evaluate", sigint_on_call(cebench.train, "evaluate", call=1))
    with pytest.raises(KeyboardInterrupt):
        fit(v, *splits, seed=0, run_dir=tmp_path)
    assert load_state(tmp_path / STATE)["epoch"] == 2  # the finished run is on disk; resume only has to score it


def test_a_second_ctrl_c_interrupts_at_once(splits: tuple[torch.Tensor, torch.Tensor], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    v = create_variant("pathak2016_l2", **TINY)
    monkeypatch.setattr(cebench.train, "fill_holes", sigint_on_call(cebench.train, "fill_holes", call=1, times=2))
    with pytest.raises(KeyboardInterrupt):
        fit(v, *splits, seed=0, run_dir=tmp_path)
    assert not (tmp_path / STATE).exists()  # no step was finished after the first Ctrl-C
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_generator_step_leaves_the_critics_weight_gradients_alone(splits: tuple[torch.Tensor, torch.Tensor],
                                                                       tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Each step computes the critic's weight gradients once (its own step), not again for the generator's loss."""
    from cebench.task import Task

    v = create_variant("landscape2023", **{**TINY, "epochs": 1})
    computed: list[int] = []
    build = Task.build_discriminator

    def counted(self: Task) -> Any:
        critic = build(self)
        assert critic is not None
        weight = next(critic.parameters())
        weight.register_hook(lambda grad: computed.append(1))
        return critic

    monkeypatch.setattr(Task, "build_discriminator", counted)
    fit(v, *splits, seed=0, run_dir=tmp_path, fast=False)
    assert len(computed) == len(splits[0]) // v.batch_size  # one per step


def test_a_checkpoint_from_another_device_type_resumes(splits: tuple[torch.Tensor, torch.Tensor],
                                                       tmp_path: Path) -> None:
    """A CUDA generator's state (Philox: seed and offset, 16 bytes) does not fit a CPU one (Mersenne Twister, 5 KB) nor
    the other way round: resuming on the other device type reseeds the stream, says so, and finishes."""
    from cebench.checkpoint import save_state

    v = create_variant("landscape2023", **TINY)

    def stop_after_first(epoch: int, record: dict[str, float]) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(v, *splits, seed=1, run_dir=tmp_path, on_epoch=stop_after_first, checkpoint_every_s=0)
    state = load_state(tmp_path / STATE)
    state["rng"] = torch.zeros(16, dtype=torch.uint8)  # what torch.Generator("cuda").get_state() holds
    save_state(tmp_path / STATE, state)
    lines: list[str] = []
    resumed = fit(v, *splits, seed=1, run_dir=tmp_path, resume=True, log=lines.append)
    assert len(resumed.history) == 2
    assert any("another device type" in line for line in lines)


def test_freezing_the_critic_for_the_generator_step_changes_no_result(splits: tuple[torch.Tensor, torch.Tensor],
                                                                       tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The frozen critic still passes the generator its gradient: training with the freeze undone (the critic's weight
    gradients computed in the generator's step, then discarded) learns the same weights, to rounding."""
    from cebench.models import Discriminator

    v = create_variant("landscape2023", **{**TINY, "epochs": 1})
    frozen = fit(v, *splits, seed=0, run_dir=tmp_path / "frozen", fast=False)
    monkeypatch.setattr(Discriminator, "requires_grad_", lambda self, requires_grad=True: self)
    unfrozen = fit(v, *splits, seed=0, run_dir=tmp_path / "unfrozen", fast=False)
    a, b = frozen.generator.state_dict(), unfrozen.generator.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), rtol=1e-5, atol=1e-6) for k in a)
    assert [r["loss_adv"] for r in frozen.history] == pytest.approx([r["loss_adv"] for r in unfrozen.history], rel=1e-5)
