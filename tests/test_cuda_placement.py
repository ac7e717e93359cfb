"""CUDA placement, checked without a GPU: the trainer's step on every path, an evaluation batch and the plain loop run
with every tensor on a fake `cuda` device (PyTorch's FakeTensorMode computes shapes, dtypes and devices, not values),
so a tensor left on the CPU among CUDA ones fails here as it would on the first GPU run.

What FakeTensorMode cannot run is replaced, each for a stated reason, by code that moves no tensor:
- `torch.Generator("cuda")` needs a driver: a CPU generator that reports `cuda` stands in (draws need only its device);
- a module's `.to()` cannot swap parameters under the mode: modules are built on the fake device, `.to()` is the identity;
- `backward()` starts the autograd engine's CUDA thread: it is skipped; gradients land where their parameters are, which
  no cebench code chooses, and `optimizer.step()` (which only reads them) is skipped with it;
- `torch.compile` does not trace inside an outer fake mode: the fast path runs eagerly, and without a driver PyTorch
  turns bf16 autocast off (with a warning), so placement is checked on that path, its bf16 casts are not;
- values do not exist: reading a loss gives a symbolic float, the finiteness check and `synchronize` are skipped, and the
  harness's one data-dependent read (is the region one shared rectangle?) is given the answer.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorDeviceMismatchError, FakeTensorMode
from torch.fx.experimental.symbolic_shapes import ShapeEnv

import cebench.masks
import cebench.metrics
import cebench.train
from cebench.evaluate import evaluate
from cebench.masks import center_box
from cebench.registry import create_variant
from cebench.task import Task

SMALL = {"image_size": 32, "width": 8, "bottleneck_dim": 32, "overlap": 2, "batch_size": 4, "epochs": 1}
REAL_GENERATOR = torch.Generator


class CudaGenerator(REAL_GENERATOR):
    """A CPU generator that says it lives on the device it was asked for."""

    def __new__(cls, device: str | torch.device = "cpu") -> CudaGenerator:
        made = super().__new__(cls, "cpu")
        made._device = torch.device(device)  # type: ignore[attr-defined]
        return made

    def __init__(self, device: str | torch.device = "cpu") -> None:
        pass

    @property  # type: ignore[override]
    def device(self) -> torch.device:
        return self._device  # type: ignore[attr-defined,no-any-return]


class StepsDone(Exception):
    """Raised where the first epoch's steps are over (its validation), ending the fake run."""


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> Callable[[], Any]:
    monkeypatch.setattr(torch, "Generator", CudaGenerator)
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *args, **kwargs: self)
    monkeypatch.setattr(torch.Tensor, "backward", lambda self, *args, **kwargs: None)
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *args, **kwargs: None)
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: module)
    monkeypatch.setattr(cebench.train, "synchronize", lambda device: None)
    monkeypatch.setattr(cebench.train, "_check_finite", lambda values, epoch: None)
    monkeypatch.setattr(cebench.train, "save_state", lambda path, state: None)
    monkeypatch.setattr(cebench.train, "save_weights", lambda path, generator, critic: None)

    @contextmanager
    def mode(real_inputs: bool = False) -> Iterator[None]:
        """`real_inputs`: real (CPU) tensors may enter, as fake tensors on their own device (a DataLoader's batches)."""
        # Constants cached per device must be made by this mode, not a previous test's.
        cebench.metrics._sobel_taps.cache_clear()
        cebench.masks._cached_constant.cache_clear()
        fake = FakeTensorMode(allow_non_fake_inputs=real_inputs, shape_env=ShapeEnv(allow_scalar_outputs=True))
        with fake, torch.device("cuda"):
            yield
        cebench.metrics._sobel_taps.cache_clear()
        cebench.masks._cached_constant.cache_clear()

    return mode


def stop(*args: Any, **kwargs: Any) -> None:
    raise StepsDone


PATHS = [(loss, critic, channels, mask, fast)
         for loss, critic, channels, mask, fast in itertools.product(
             ["l2", "joint"], ["patch", "context"], ["rgb", "gray"], ["center", "block", "region"], [False, True])
         if not (loss == "l2" and critic == "context")]


@pytest.mark.parametrize(("loss", "critic", "channels", "mask", "fast"), PATHS)
def test_every_training_path_keeps_every_tensor_on_the_device(fake_cuda: Callable[[], Any], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch, loss: str, critic: str,
                                                              channels: str, mask: str, fast: bool) -> None:
    variant = create_variant("landscape2023", **SMALL, loss=loss, discriminator=critic, channels=channels, mask=mask)
    monkeypatch.setattr(cebench.train, "evaluate", stop)
    with fake_cuda():
        images = torch.zeros(8, 3, 40, 40, dtype=torch.uint8)
        assert images.device.type == "cuda"
        with pytest.raises(StepsDone):
            cebench.train.fit(variant, images, images[:2], 0, tmp_path, fast=fast)


def test_an_autoencoder_pretext_step_too(fake_cuda: Callable[[], Any], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    variant = create_variant("landscape2023", **SMALL, pretext="autoencoder")
    monkeypatch.setattr(cebench.train, "evaluate", stop)
    with fake_cuda(), pytest.raises(StepsDone):
        images = torch.zeros(8, 3, 40, 40, dtype=torch.uint8)
        cebench.train.fit(variant, images, images[:2], 0, tmp_path)


def test_a_cpu_tensor_among_cuda_ones_fails_here(fake_cuda: Callable[[], Any], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The check bites: loss weights left on the CPU (the plain loop's old bug, in the trainer) raise at once."""
    variant = create_variant("landscape2023", **SMALL)
    real_weights = Task.loss_weights
    monkeypatch.setattr(Task, "loss_weights", lambda self, masks: real_weights(self, masks).cpu())
    monkeypatch.setattr(cebench.train, "evaluate", stop)
    with fake_cuda(), pytest.raises(FakeTensorDeviceMismatchError):
        images = torch.zeros(8, 3, 40, 40, dtype=torch.uint8)
        cebench.train.fit(variant, images, images[:2], 0, tmp_path)


@pytest.mark.parametrize(("channels", "mask"), [("rgb", "center"), ("gray", "center"), ("rgb", "block")])
def test_an_evaluation_batch_stays_on_the_device(fake_cuda: Callable[[], Any], monkeypatch: pytest.MonkeyPatch,
                                                 channels: str, mask: str) -> None:
    variant = create_variant("landscape2023", **SMALL, channels=channels, mask=mask)
    task = Task(variant)
    top, side = center_box(variant.image_size)
    shared = (top, top, side, side) if mask == "center" else None  # the harness's one data-dependent read, answered
    monkeypatch.setattr(cebench.metrics, "_shared_box", lambda region: shared)
    with fake_cuda():
        generator = task.build_generator()
        scores = evaluate(generator, task, torch.zeros(6, 3, 40, 40, dtype=torch.uint8), batch_size=4, amp=True)
        assert scores and all(s.device.type == "cuda" and s.shape == (6,) for s in scores.values())


def test_the_plain_loop_stays_on_the_device(fake_cuda: Callable[[], Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference loop of the benchmarks. Its DataLoader (worker processes, a shuffled sampler: values) is replaced
    by what it yields, CPU batches, which the loop must move to the device itself."""
    import benchmarks.plain_loop as plain_loop

    variant = create_variant("landscape2023", **SMALL)
    batches = [torch.zeros(4, 3, 32, 32) for _ in range(2)]  # real CPU tensors, made before the fake mode
    monkeypatch.setattr(plain_loop, "DataLoader", lambda dataset, **kwargs: batches)
    with fake_cuda(real_inputs=True):
        assert plain_loop.plain_epoch(variant, [Path("unused.png")] * 8, torch.device("cuda")) > 0
