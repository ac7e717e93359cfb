"""Atomic writes: a write that fails part-way (here, a full disk) leaves the previous file exactly as it was, and no
temporary file behind. Checked on every kind of file a run or a report writes: checkpoints, weights, tables, text, PNG."""

from __future__ import annotations

import resource
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from cebench.checkpoint import load_state, load_weights, save_state, save_weights
from cebench.imageio import read_image, write_png, write_text
from cebench.results import append_rows


@contextmanager
def disk_full_after(n_bytes: int) -> Iterator[None]:
    """Any write past byte `n_bytes` of a file fails (EFBIG, 'File too large'), as on a disk that fills up mid-write.

    RLIMIT_FSIZE acts in the kernel, so it reaches every writer alike: Python's, PIL's, torch's C++ zip writer and
    safetensors' Rust one (which sizes its file first, so there the failure comes before the first byte). SIGXFSZ is
    ignored meanwhile, so the write fails instead of the process being killed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def _layer(version: int) -> nn.Module:
    layer = nn.Linear(64, 64)
    nn.init.constant_(layer.weight, version)
    return layer


def _read_weights(path: Path) -> float:
    layer = nn.Linear(64, 64)
    load_weights(path, layer)
    return float(layer.weight.detach()[0, 0])


def _noise(version: int) -> torch.Tensor:
    return torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(version))


# kind -> (file name, write version v of it, read it back as something comparable with ==)
Writer = tuple[str, Callable[[Path, int], object], Callable[[Path], object]]
WRITERS: dict[str, Writer] = {
    "checkpoint": ("state.pt", lambda p, v: save_state(p, {"epoch": v, "weights": torch.full((64, 64), float(v))}),
                   lambda p: load_state(p)["epoch"]),
    "weights": ("model.safetensors", lambda p, v: save_weights(p, _layer(v), None), _read_weights),
    "results table": ("results.csv", lambda p, v: append_rows(p, [{"spec": "s", "run_id": "r", "psnr_mean": v,
                                                                   "notes": "x" * 4000}]),
                      lambda p: pd.read_csv(p).to_dict("list")),
    "text": ("run.json", lambda p, v: write_text(p, f"{v}" * 4000), lambda p: p.read_text()),
    "png": ("samples.png", lambda p, v: write_png(p, _noise(v)), lambda p: read_image(p).tolist()),
}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_a_write_failing_midway_keeps_the_previous_file(kind: str, tmp_path: Path) -> None:
    name, write, read = WRITERS[kind]
    folder, scratch = tmp_path / "run", tmp_path / "scratch"
    write(folder / name, 1)
    before, old = snapshot(folder), read(folder / name)
    write(scratch / name, 2)
    new, new_size = read(scratch / name), (scratch / name).stat().st_size
    assert new != old and new_size > 2000  # two distinguishable versions, large enough to fail half-way through
    with disk_full_after(new_size // 2), pytest.raises(Exception):  # noqa: B017 (each writer raises its own type)
        write(folder / name, 2)
    assert snapshot(folder) == before  # the old bytes, and no partial or temporary file beside them
    write(folder / name, 2)  # with room on the disk, the same write replaces the file
    assert read(folder / name) == new
    assert sorted(p.name for p in folder.iterdir()) == sorted(before)
