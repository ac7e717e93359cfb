"""Streaming a pack: every image once per epoch, the order a function of the seed, resume mid-epoch, and training on a
streamed pack gives the numbers of the same pack loaded whole."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import cebench.data.stream as stream_module
from cebench.config import DataConfig, Spec
from cebench.data.pack import Pack, plan, write_pack
from cebench.data.source import load_train
from cebench.data.stream import InMemory, Streamed, chunked_order
from cebench.run import run_spec


def numbered_pack(out: Path, n: int, size: int = 8, chunk: int = 16) -> Pack:
    """A pack whose image i holds i in its first two channels (i % 256, i // 256): a batch says which images it has."""

    def decode(names: Sequence[str]) -> list[np.ndarray | None]:
        images = []
        for name in names:
            i = int(name.removesuffix(".png"))
            image = np.zeros((size, size, 3), dtype=np.uint8)
            image[..., 0], image[..., 1] = i % 256, i // 256
            images.append(image)
        return list(images)

    wanted = plan("generated", "-", [f"{i:05d}.png" for i in range(n)], size, size)
    wanted["chunk"] = chunk
    return write_pack(out, wanted, decode)


def ids(images: torch.Tensor, idx: torch.Tensor) -> list[int]:
    picked = images[idx]
    return (picked[:, 0, 0, 0].long() + 256 * picked[:, 1, 0, 0].long()).tolist()


def epoch(source: Streamed | InMemory, seed: int, bs: int, start: int = 0) -> list[list[int]]:
    order = source.order(torch.Generator().manual_seed(seed))
    return [ids(images, idx) for images, idx in source.batches(order, start, bs)]


def test_chunked_order_is_a_permutation_that_keeps_windows_together() -> None:
    order = chunked_order(1000, 16, torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(1000))
    windows = order[: 8 * 16].div(16, rounding_mode="floor")  # the first window holds 8 whole chunks, nothing else
    assert len(set(windows.tolist())) == 8 and torch.bincount(windows).max() == 16


@pytest.mark.parametrize("n", [96, 100])
def test_every_image_once_per_epoch_in_a_seeded_order(tmp_path: Path, n: int) -> None:
    pack = numbered_pack(tmp_path / "pack", n)
    stream = Streamed(pack, np.arange(n), torch.device("cpu"), block_images=24)
    first = epoch(stream, seed=0, bs=8)
    seen = [i for batch in first for i in batch]
    assert all(len(b) == 8 for b in first) and len(first) == n // 8
    assert len(set(seen)) == len(seen) == n // 8 * 8  # the partial last batch is dropped, as in memory
    assert first == epoch(stream, seed=0, bs=8)
    assert first != epoch(stream, seed=1, bs=8)
    # The same pack loaded whole visits the same images in the same order.
    whole = InMemory(pack.read(np.arange(n)), chunk=16)
    assert first == epoch(whole, seed=0, bs=8)


def test_a_subset_of_rows_streams_only_those(tmp_path: Path) -> None:
    pack = numbered_pack(tmp_path / "pack", 80)
    rows = np.arange(3, 80, 2)  # e.g. a train split whose test images sit between its rows
    seen = [i for batch in epoch(Streamed(pack, rows, torch.device("cpu"), block_images=16), 0, 4) for i in batch]
    assert len(seen) == len(set(seen)) == len(rows) // 4 * 4 and set(seen) <= set(rows.tolist())


def test_resume_mid_epoch_gives_the_remaining_batches(tmp_path: Path) -> None:
    pack = numbered_pack(tmp_path / "pack", 100)
    stream = Streamed(pack, np.arange(100), torch.device("cpu"), block_images=24)
    order = stream.order(torch.Generator().manual_seed(5))
    full = [ids(i, x) for i, x in stream.batches(order, 0, 8)]
    for start in (1, 3, 7):  # inside a block, at a block boundary, near the end
        assert [ids(i, x) for i, x in stream.batches(order, start, 8)] == full[start:]


def test_a_batch_source_stopped_early_stops_its_thread(tmp_path: Path) -> None:
    pack = numbered_pack(tmp_path / "pack", 100)
    stream = Streamed(pack, np.arange(100), torch.device("cpu"), block_images=8)
    batches = stream.batches(stream.order(torch.Generator().manual_seed(0)), 0, 4)
    next(batches)
    batches.close()  # what an interrupted epoch does; must not hang
    assert epoch(stream, 0, 4)  # and the source is still usable


SPEC = """
name: streamed
preset: landscape2023
data: {{name: pack, path: {path}, n_train: null, n_val: 8, n_test: 8, stream: {stream}}}
overrides: {{image_size: 32, width: 8, bottleneck_dim: 32, overlap: 2}}
seeds: [0]
epochs: 2
batch_size: 8
"""


def test_training_on_a_streamed_pack_equals_training_on_it_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_module, "BLOCK_IMAGES", 16)  # several blocks an epoch: 44 training images, batch 8
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (60, 36, 36, 3), dtype=np.uint8)
    wanted = plan("generated", "-", [f"{i:05d}.png" for i in range(60)], 32, 36)
    wanted["chunk"] = 8
    write_pack(tmp_path / "pack", wanted, lambda names: [images[int(n[:5])] for n in names])
    tables = {}
    for stream in ("always", "never"):
        spec = Spec.model_validate(yaml.safe_load(SPEC.format(path=tmp_path / "pack", stream=stream)))
        source = load_train(spec.data, 32, torch.device("cpu"))
        assert isinstance(source, Streamed if stream == "always" else InMemory)
        assert not isinstance(source, Streamed) or source.block_images == 16
        tables[stream] = run_spec(spec, tmp_path / stream, torch.device("cpu"))
    metrics = [c for c in tables["never"].columns if c.endswith("_mean")]
    assert metrics
    pd.testing.assert_frame_equal(tables["always"][metrics], tables["never"][metrics])
    assert "data_stream" not in tables["never"].columns  # how the split was held is not a setting of the experiment


def test_stream_is_for_packs_only() -> None:
    with pytest.raises(ValueError, match=r"data\.stream applies to data\.name 'pack' only"):
        DataConfig(stream="always")
