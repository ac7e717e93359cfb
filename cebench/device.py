"""Picking the training device: CUDA when present, CPU otherwise, `--device` to override."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from cebench.errors import UserError


def pick_device(name: str | None = None) -> torch.device:
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device; valid: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine; valid here: auto, cpu")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: unsupported; valid: auto, cpu, cuda, cuda:N")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for `device`'s queued work (a no-op on CPU), so a timer read next counts it. `torch.cuda.synchronize()`
    without an argument waits for the *current* device only, not the `--device cuda:N` the work was queued on."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def cuda_settings(device: torch.device, fast: bool) -> Iterator[None]:
    """cuDNN's autotuner on (a run's shapes never change, so the search is paid once), and TF32 off on the plain path:
    PyTorch runs fp32 convolutions in TF32 on Ampere and later by default, and "plain fp32" would then be neither.
    The previous settings come back afterwards; on a CPU nothing changes."""
    if device.type != "cuda":
        yield
        return
    backends = torch.backends
    saved = backends.cudnn.benchmark, backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32
    backends.cudnn.benchmark = True
    if not fast:
        backends.cudnn.allow_tf32 = backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        backends.cudnn.benchmark, backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32 = saved
