"""One entry point for every dataset: `load_split` returns a split as a uint8 tensor on the training device, and
`image_batch` turns indices into a float batch, so the trainer never waits on Python or a DataLoader."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cebench.config import DataConfig
from cebench.data import landscapes
from cebench.data.folder import crop_batch, load_folder
from cebench.masks import to_luma

DATASETS = {
    "landscapes": "procedural landscape scenes, generated on the device (embedded default; 15,000 train / 150 test)",
    "folder": "any directory tree of JPEG/PNG/WebP/BMP (short side resized, random crop + flip / centre crop)",
}
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
    assert cfg.path is not None
    load_size = cfg.load_size or default_load_size(image_size)
    images = load_folder(
        cfg.path, split, image_size, load_size, n_val=cfg.n_val, n_test=cfg.n_test, n_train=cfg.n_train, log=log
    )
    return images.to(device)


def image_batch(
    images: torch.Tensor, idx: torch.Tensor, size: int, gray: bool, train: bool, generator: torch.Generator | None
) -> torch.Tensor:
    """Float batch in [-1, 1]: random crop + flip when training, centre crop otherwise; luma for grayscale variants."""
    batch = crop_batch(images, idx, size, train=train, generator=generator)
    return to_luma(batch) if gray else batch
