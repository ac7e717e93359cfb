"""Labelled images for the probe: the landscapes' latent scene attributes, or an image folder with one subfolder per class.

Both come as `Labelled`: uint8 images (as `cebench.data.source.load_split` returns them) and, per task, one class index
per image. The splits are the datasets' own (landscapes: disjoint index ranges; folder: train/ and test/ subfolders when
present, else the hash order), so probe test images are never trained on, by the pretext or by the probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cebench.config import DataConfig
from cebench.data import landscapes
from cebench.data.folder import load_folder_files
from cebench.data.source import default_load_size, landscape_indices, load_split, open_pack, pack_rows
from cebench.errors import UserError, choices

# Tasks that need more than a few pixels: a linear classifier on a 4x4 thumbnail stays near chance on them (tested),
# while it reads `palette` off the sky and `lake` off the layout almost perfectly, so those two are not in the default set.
LANDSCAPE_TASKS = ("ridges", "trees")
FOLDER_TASK = "class"


@dataclass(frozen=True)
class Labelled:
    images: torch.Tensor  # uint8 (N, 3, L, L) on the device
    labels: dict[str, torch.Tensor]  # task -> int64 (N,) on the CPU
    classes: dict[str, tuple[str, ...]]  # task -> class names, indexed by label


def available_tasks(data: DataConfig) -> tuple[str, ...]:
    """Every task `data` can label (the default set is `default_tasks`)."""
    return tuple(landscapes.ATTRIBUTES) if data.name == "landscapes" else (FOLDER_TASK,)


def default_tasks(data: DataConfig) -> tuple[str, ...]:
    return LANDSCAPE_TASKS if data.name == "landscapes" else (FOLDER_TASK,)


def check_tasks(data: DataConfig, tasks: list[str] | tuple[str, ...]) -> None:
    valid = available_tasks(data)
    for task in tasks:
        if task not in valid:
            raise UserError(f"probe task {task!r} does not exist for {data.name} data; valid: {choices(valid)}")


def load_labelled(data: DataConfig, split: str, image_size: int, device: torch.device) -> Labelled:
    """One split of `data` with every task's labels."""
    if data.name == "landscapes":
        images = load_split(data, split, image_size, device)
        attrs = landscapes.attributes(data.seed, landscape_indices(data, split))
        return Labelled(images, attrs, dict(landscapes.ATTRIBUTES))
    assert data.path is not None
    if data.name == "pack":  # the folder's file names are in the pack: the same classes as the folder's
        pack = open_pack(data, image_size)
        rows = pack_rows(data, pack, split)
        images, files = pack.read(rows), [pack.files[r] for r in rows]
        layout = {f.split("/")[0] for f in pack.files} >= {"train", "test"}
    else:
        images, files = load_folder_files(data.path, split, image_size,
                                          data.load_size or default_load_size(image_size),
                                          n_val=data.n_val, n_test=data.n_test, n_train=data.n_train)
        layout = (Path(data.path) / "train").is_dir() and (Path(data.path) / "test").is_dir()
    names = [class_of(data.path, f, layout) for f in files]
    return _by_name(images.to(device), names, tuple(sorted(set(names))))


def class_of(root: Path, relative: str, layout: bool) -> str:
    """The class of an image: its first folder level under `root` (under root/train/ etc. when `layout`, the splits
    are folders)."""
    parts = relative.split("/")
    if parts[0] in ("train", "val", "test") and layout:
        parts = parts[1:]
    if len(parts) < 2:
        raise UserError(f"data folder '{root}': {relative} is not inside a class folder (a labelled folder holds one "
                        "subfolder per class, ImageNet-style)")
    return parts[0]


def align(train: Labelled, other: Labelled, split: str, root: Path | None) -> Labelled:
    """Index `other`'s folder classes by the training split's class list (landscape labels are already global)."""
    if FOLDER_TASK not in train.classes:
        return other
    known = train.classes[FOLDER_TASK]
    if len(known) < 2:
        raise UserError(f"data folder '{root}' has {len(known)} class ({choices(known)}) in its train split; a labelled "
                        "folder needs two or more class subfolders")
    names = [other.classes[FOLDER_TASK][i] for i in other.labels[FOLDER_TASK]]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise UserError(f"data folder '{root}': class {unknown[0]!r} of the {split} split has no training images; "
                        f"classes with training images: {choices(known)}")
    return _by_name(other.images, names, known)


def _by_name(images: torch.Tensor, names: list[str], classes: tuple[str, ...]) -> Labelled:
    index = {name: i for i, name in enumerate(classes)}
    labels = torch.tensor([index[n] for n in names], dtype=torch.int64)
    return Labelled(images, {FOLDER_TASK: labels}, {FOLDER_TASK: classes})
