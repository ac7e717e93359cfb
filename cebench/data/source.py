"""One entry point for every dataset: `load_split` returns a split as a uint8 tensor on the training device,
`load_train` the training split as a batch source (that tensor, or a pack streamed from disk when it is large), and
`image_batch` turns indices into a float batch, so the trainer never waits on Python or a DataLoader."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cebench.config import DataConfig
from cebench.data import landscapes
from cebench.data.folder import CropDraws, crop_batch, load_folder, split_names
from cebench.data.pack import INDEX, Pack
from cebench.data.stream import InMemory, Streamed, TrainSource
from cebench.errors import UserError
from cebench.masks import to_luma

DATASETS = {
    "landscapes": "procedural landscape scenes, generated on the device (embedded default; 15,000 train / 150 test)",
    "folder": "any directory tree of JPEG/PNG/WebP/BMP (short side resized, random crop + flip / centre crop)",
    "pack": "a folder packed once by `cebench data pack` into a memory-mapped file: any size, streamed when large",
}
STREAM_BYTES = 4 << 30  # data.stream auto: a pack's training split larger than this streams, a smaller one is loaded
SPLITS = ("train", "val", "test")
# Landscape splits are disjoint index ranges; test and val start far away so n_train can change without moving them.
_LANDSCAPE_OFFSETS = {"train": 0, "val": 100_000_000, "test": 200_000_000}


def split_count(cfg: DataConfig, split: str) -> int | None:
    return {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}[split]


def landscape_indices(cfg: DataConfig, split: str) -> torch.Tensor:
    """The scene indices of a landscapes split: what `load_split` renders, and what `landscapes.attributes` labels."""
    start = _LANDSCAPE_OFFSETS[split]
    return torch.arange(start, start + (split_count(cfg, split) or 0), dtype=torch.int64)


def default_load_size(image_size: int) -> int:
    """Pathak's recipe: short side 350 before a random 128 crop, scaled to other sizes."""
    return round(image_size * 350 / 128)


def load_split(
    cfg: DataConfig, split: str, image_size: int, device: torch.device, log: Callable[[str], None] | None = None
) -> torch.Tensor:
    """The split's images as uint8 (N, 3, L, L) on `device` (L = image_size for landscapes, the load size for folders)."""
    if cfg.name == "landscapes":
        return landscapes.generate(cfg.seed, landscape_indices(cfg, split), image_size, device=device)
    if cfg.name == "pack":
        pack = open_pack(cfg, image_size)
        return pack.read(pack_rows(cfg, pack, split), device)
    assert cfg.path is not None
    load_size = cfg.load_size or default_load_size(image_size)
    images = load_folder(
        cfg.path, split, image_size, load_size, n_val=cfg.n_val, n_test=cfg.n_test, n_train=cfg.n_train, log=log
    )
    return images.to(device)


def load_train(
    cfg: DataConfig, image_size: int, device: torch.device, log: Callable[[str], None] | None = None
) -> TrainSource:
    """The training split as the trainer reads it: on the device whole (every dataset; a pack unless `data.stream`
    says otherwise), or streamed from a pack by blocks (`always`, or `auto` above `STREAM_BYTES`)."""
    if cfg.name != "pack":
        return InMemory(load_split(cfg, "train", image_size, device, log))
    pack = open_pack(cfg, image_size)
    rows = pack_rows(cfg, pack, "train")
    size = len(rows) * pack.row_bytes
    if cfg.stream == "always" or (cfg.stream == "auto" and size > STREAM_BYTES):
        if log is not None:
            log(f"streaming the train split from pack {cfg.path}: {len(rows):,} images, {size / 2**30:.1f} GiB")
        return Streamed(pack, rows, device)
    return InMemory(pack.read(rows, device), chunk=int(pack.index["chunk"]))


_OPEN: dict[tuple[str, int], Pack] = {}  # packs opened in this process, by path and header time: a header of a million
# file names takes a second to parse, and each split and run would otherwise parse it again


def open_pack(cfg: DataConfig, image_size: int) -> Pack:
    """The pack of a `pack` dataset, checked to be made for `image_size` (and the spec's load size, if it sets one)."""
    assert cfg.path is not None
    path = Path(cfg.path)
    if not path.is_dir():
        raise UserError(f"pack '{path}' {'is not a directory' if path.exists() else 'does not exist'} (make one with "
                        "`cebench data pack FOLDER --out DIR`)")
    stamp = (path / INDEX).stat().st_mtime_ns if (path / INDEX).is_file() else 0
    key = (str(path.resolve()), stamp)
    if key not in _OPEN:
        _OPEN[key] = Pack(path)
    pack = _OPEN[key]
    if pack.image_size != image_size or cfg.load_size not in (None, pack.load_size):
        wanted = f"{image_size} px" + (f" (load size {cfg.load_size})" if cfg.load_size else "")
        raise UserError(f"pack '{path}' was made for {pack.image_size} px images (load size {pack.load_size}), the "
                        f"spec trains at {wanted}; repack with `cebench data pack {pack.index['source']} --size "
                        f"{image_size} --out DIR`")
    return pack


def pack_rows(cfg: DataConfig, pack: Pack, split: str) -> np.ndarray:
    """The pack rows of a split, ascending: the folder dataset's rule on the names of every file packed, the
    unreadable ones then dropped (as the folder dataset does), so a pack splits exactly as its folder."""
    names = split_names(pack.files + pack.skipped, n_val=cfg.n_val, n_test=cfg.n_test, n_train=cfg.n_train)[split]
    row_of = pack.rows()
    rows = np.sort(np.array([row_of[n] for n in names if n in row_of], dtype=np.int64))
    if len(rows) == 0 and split != "val":  # no validation images is a choice (n_val 0): per-epoch curves are skipped
        raise UserError(f"pack '{cfg.path}' has no images for the {split} split ({len(pack)} images in all; "
                        f"n_test {cfg.n_test}, n_val {cfg.n_val})")
    return rows


def image_batch(
    images: torch.Tensor, idx: torch.Tensor, size: int, gray: bool, train: bool, generator: torch.Generator | None,
    draws: CropDraws | None = None,
) -> torch.Tensor:
    """Float batch in [-1, 1]: random crop + flip when training (from `generator`, or from `draws` made beforehand by
    `crop_draws`), centre crop otherwise; luma for grayscale variants."""
    batch = crop_batch(images, idx, size, train=train, generator=generator, draws=draws)
    return to_luma(batch) if gray else batch
