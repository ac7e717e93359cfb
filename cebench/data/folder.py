"""The `folder` dataset: any directory tree of JPEG/PNG/WebP/BMP images.

Pathak's recipe (`loadSize` 350, `fineSize` 128 in his `train.lua`): every image is resized so its short side is
`load_size` and centre-cropped to a square once, at load time, into one packed uint8 tensor (N, 3, L, L); each batch is
then a random `size` crop + random horizontal flip of that square for training, or its centre crop for evaluation
(`crop_batch`, vectorised on the training device).

Splits. If `root/train` and `root/test` exist they are the splits (`root/val` too when present; otherwise val is
the last `n_val` images of train's sorted list, taken out of train). Otherwise every image under `root` is ordered by
the SHA-1 of its relative path: the first `n_test` are test, the next `n_val` val, the rest train. That order depends
only on each file's own path, so adding or removing files moves few existing images between splits. Counts are caps:
`n_test`, `n_val` and `n_train` take the first images in hash order (an unbiased subset, not the first class folder);
each split's images are then kept in sorted path order. Splits are assigned before decoding, so an unreadable file
costs its split one image. The whole folder is decoded once into a cached pack (`cebench.data.pack`), reused while the
folder is unchanged.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from cebench.data.pack import Pack, load_pack, pack_folder, pack_path
from cebench.errors import UserError
from cebench.imageio import IMAGE_SUFFIXES, list_images, read_image

SPLITS = ("train", "val", "test")
PROGRESS_MIN_FILES = 200  # show a progress bar above this many files
_CHUNK = 64  # files decoded per round: bounds the decoded-but-not-yet-stored images held in memory


def load_folder(
    root: Path,
    split: str,
    size: int,
    load_size: int,
    n_val: int,
    n_test: int,
    n_train: int | None = None,
    log: Callable[[str], None] | None = None,
) -> torch.Tensor:
    """uint8 (N, 3, L, L) tensor of the split's images, each resized so its short side is L=load_size (antialiased) and
    centre-cropped to L x L.

    Raises UserError for a missing or empty folder, or a split with no (readable) images; ValueError for bad arguments.
    Unreadable or truncated files are skipped and reported through `log` in one line.
    """
    return load_folder_files(root, split, size, load_size, n_val, n_test, n_train, log)[0]


def load_folder_files(
    root: Path,
    split: str,
    size: int,
    load_size: int,
    n_val: int,
    n_test: int,
    n_train: int | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[torch.Tensor, list[str]]:
    """`load_folder`, with the path (relative to `root`, '/'-separated) of each returned image."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if load_size < size:
        raise ValueError(f"load_size {load_size} is smaller than the crop size {size}")
    if n_val < 0 or n_test < 0 or (n_train is not None and n_train < 0):
        raise ValueError(f"split counts must be >= 0 (n_train={n_train}, n_val={n_val}, n_test={n_test})")
    root = Path(root)
    files = split_files(root, n_val=n_val, n_test=n_test, n_train=n_train)[split]
    if not files:
        hint = _split_hint(root, split, {"train": n_train, "val": n_val, "test": n_test})
        raise UserError(f"data folder '{root}' has no images for the {split} split ({hint})")

    pack = pack_or_load(root, load_size)[0]
    rows = pack.rows()
    wanted = [_relative(f, root) for f in files]
    skipped = [f for f in wanted if f not in rows]
    kept = [f for f in wanted if f in rows]
    images = pack.images[[rows[f] for f in kept]]
    if skipped and log is not None:
        noun = "file" if len(skipped) == 1 else "files"
        log(f"folder {root}: skipped {len(skipped)} unreadable {noun} (first: {skipped[0]})")
    if images.shape[0] == 0:
        raise UserError(f"data folder '{root}' has no readable images for the {split} split ({len(files)} unreadable)")
    return images, kept


def pack_or_load(root: Path, load_size: int) -> tuple[Pack, Path, bool]:
    """The folder's cached pack, made now if missing or stale: (pack, its path, whether it was made now)."""
    if not Path(root).is_dir():
        split_files(root, 0, 0)  # raises the missing-folder error
    pack = load_pack(root, load_size)
    if pack is not None:
        return pack, pack_path(root, load_size), False
    return (*pack_folder(root, load_size, _decode_label(root)), True)


def split_files(root: Path, n_val: int, n_test: int, n_train: int | None = None) -> dict[str, list[Path]]:
    """The files of each split, sorted by path (see the module docstring for the rule). Raises UserError when `root` is
    missing or holds no images."""
    root = Path(root)
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise UserError(f"data folder '{root}' {what}")

    if (root / "train").is_dir() and (root / "test").is_dir():
        train = list_images(root / "train")
        test = _hash_order(list_images(root / "test"), root)[:n_test]
        if (root / "val").is_dir():
            val = _hash_order(list_images(root / "val"), root)[:n_val]
        else:
            cut = max(len(train) - n_val, 0)
            train, val = train[:cut], train[cut:]
        train = _hash_order(train, root)[:n_train]
        if not (train or val or test):
            raise UserError(f"data folder '{root}' has no images in train/ or test/ ({_looked_for()})")
    else:
        ordered = _hash_order(list_images(root), root)
        if not ordered:
            raise UserError(f"data folder '{root}' has no images ({_looked_for()})")
        test = ordered[:n_test]
        val = ordered[n_test : n_test + n_val]
        train = ordered[n_test + n_val :][:n_train]
    return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}


def crop_batch(
    images: torch.Tensor, idx: torch.Tensor, size: int, train: bool, generator: torch.Generator | None
) -> torch.Tensor:
    """float (B, 3, size, size) in [-1, 1] on images.device: random crop + random horizontal flip when train, centre
    crop otherwise.

    `images` is uint8 (N, C, H, W) in [0, 255] (a float tensor is taken to be in [0, 1]); `idx` holds B indices into it.
    All randomness comes from `generator` (three draws per call: tops, lefts, flips), drawn on the generator's device,
    so a seeded generator gives the same batch every time. One gather, no Python loop over images.
    """
    _, channels, height, width = images.shape
    if size > height or size > width:
        raise ValueError(f"crop size {size} is larger than the images ({height}x{width})")
    device = images.device
    idx = idx.reshape(-1).to(device=device, dtype=torch.long)
    batch = idx.numel()
    if train:
        draw_device = generator.device if generator is not None else device
        top = torch.randint(0, height - size + 1, (batch,), generator=generator, device=draw_device).to(device)
        left = torch.randint(0, width - size + 1, (batch,), generator=generator, device=draw_device).to(device)
        flip = torch.randint(0, 2, (batch,), generator=generator, device=draw_device).to(device).bool()
    else:
        top = torch.full((batch,), (height - size) // 2, device=device, dtype=torch.long)
        left = torch.full((batch,), (width - size) // 2, device=device, dtype=torch.long)
        flip = torch.zeros(batch, device=device, dtype=torch.bool)

    offsets = torch.arange(size, device=device)
    rows = top[:, None] + offsets  # (B, S)
    cols = left[:, None] + torch.where(flip[:, None], offsets.flip(0), offsets)  # (B, S), reversed when flipped
    crops = images[
        idx[:, None, None, None],
        torch.arange(channels, device=device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]  # (B, C, S, S)
    if crops.dtype == torch.uint8:
        return crops.float() / 127.5 - 1.0
    return crops.float() * 2.0 - 1.0


def resize_center_crop(image: torch.Tensor, load_size: int) -> torch.Tensor:
    """uint8 (3, H, W) -> uint8 (3, L, L): short side resized to L (bilinear, antialiased), then the centre L x L."""
    _, height, width = image.shape
    # A panorama (or a 1 x 100000 strip) would be resized whole first, gigabytes for a row of pixels: keep only its
    # centre, twice as long as it is short, which holds the square that is kept plus margin for the resize filter.
    keep_h, keep_w = min(height, 2 * width), min(width, 2 * height)
    if (keep_h, keep_w) != (height, width):
        top, left = (height - keep_h) // 2, (width - keep_w) // 2
        image = image[:, top : top + keep_h, left : left + keep_w]
        height, width = keep_h, keep_w
    scale = load_size / min(height, width)
    new_h = max(load_size, round(height * scale))
    new_w = max(load_size, round(width * scale))
    if (new_h, new_w) != (height, width):
        resized = F.interpolate(
            image[None].float(), size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True
        )[0]
        image = resized.round_().clamp_(0, 255).to(torch.uint8)
    top = (new_h - load_size) // 2
    left = (new_w - load_size) // 2
    return image[:, top : top + load_size, left : left + load_size].contiguous()


def _decode_label(root: Path) -> Callable[[Sequence[Path], int], tuple[torch.Tensor, list[Path]]]:
    return lambda files, load_size: _decode_all(files, load_size, f"packing {root.name or root}")


def _load_one(path: Path, load_size: int) -> torch.Tensor | None:
    image = read_image(path)
    return None if image is None else resize_center_crop(image, load_size)


def _decode_all(files: Sequence[Path], load_size: int, label: str) -> tuple[torch.Tensor, list[Path]]:
    """Decode and resize `files` into a preallocated uint8 (N, 3, L, L) tensor (threads overlap PIL decoding, which
    releases the GIL). Returns the readable images, in file order, and the skipped paths."""
    out = torch.empty((len(files), 3, load_size, load_size), dtype=torch.uint8)
    skipped: list[Path] = []
    count = 0
    workers = max(1, min(8, os.cpu_count() or 1))
    with _progress(len(files), label) as advance, ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(files), _CHUNK):
            chunk = files[start : start + _CHUNK]
            for path, image in zip(chunk, pool.map(_load_one, chunk, [load_size] * len(chunk)), strict=True):
                if image is None:
                    skipped.append(path)
                else:
                    out[count] = image
                    count += 1
                advance()
    # A view when files were skipped: the few unused rows are not worth a full copy of the dataset.
    return (out if count == len(files) else out[:count]), skipped


class _FilesPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.0f} files/s" if speed else "- files/s", style="progress.data.speed")


@contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[], None]]:
    """A rich progress bar on stderr for large folders (interactive terminals only); yields a function that advances
    it by one file."""
    console = Console(stderr=True)
    if total <= PROGRESS_MIN_FILES or not console.is_terminal:
        yield lambda: None
        return
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _FilesPerSecond(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda: progress.advance(task)


def _hash_order(files: Sequence[Path], root: Path) -> list[Path]:
    """`files` ordered by the SHA-1 of their path relative to `root` (ties, impossible in practice, by the path)."""

    def key(path: Path) -> tuple[str, str]:
        rel = _relative(path, root)
        return hashlib.sha1(rel.encode("utf-8")).hexdigest(), rel

    return sorted(files, key=key)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _looked_for() -> str:
    return f"looked for {', '.join(IMAGE_SUFFIXES)}"


def _split_hint(root: Path, split: str, counts: dict[str, int | None]) -> str:
    if counts[split] == 0:
        return f"n_{split} is 0"
    if (root / "train").is_dir() and (root / "test").is_dir():
        if split == "val" and not (root / "val").is_dir():
            return "no val/ folder and train/ has no images to spare"
        return f"{split}/ has no images; {_looked_for()}"
    return f"n_test + n_val take all {len(list_images(root))} images"
