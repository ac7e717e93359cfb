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
costs its split one image. The whole folder is decoded once into a cached pack (`cebench.data.pack`, a memory-mapped
file), reused while the folder is unchanged. The rule reads only relative paths (`split_names`), so a `pack` dataset
splits its files' names exactly as the folder they came from.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cebench.data.pack import INDEX, JOURNAL, DecodeChunk, Pack, current, fingerprint, pack_path, plan, write_pack
from cebench.errors import UserError
from cebench.imageio import IMAGE_SUFFIXES, list_images, read_image

SPLITS = ("train", "val", "test")


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

    pack = pack_or_load(root, size, load_size)[0]
    rows = pack.rows()
    wanted = [_relative(f, root) for f in files]
    skipped = [f for f in wanted if f not in rows]
    kept = [f for f in wanted if f in rows]
    images = pack.read([rows[f] for f in kept])
    if skipped and log is not None:
        noun = "file" if len(skipped) == 1 else "files"
        log(f"folder {root}: skipped {len(skipped)} unreadable {noun} (first: {skipped[0]})")
    if images.shape[0] == 0:
        raise UserError(f"data folder '{root}' has no readable images for the {split} split ({len(files)} unreadable)")
    return images, kept


def pack_or_load(
    root: Path, image_size: int, load_size: int, out: Path | None = None, stop_after: int | None = None
) -> tuple[Pack, Path, bool]:
    """The folder's pack in `out` (default: the cache the `folder` dataset reads), made now if missing, unfinished
    (resumed) or stale: (pack, its path, whether it was made now). `stop_after` chunks: see `write_pack`."""
    root = Path(root)
    if not root.is_dir():
        split_files(root, 0, 0)  # raises the missing-folder error
    if load_size < image_size:
        raise UserError(f"load size {load_size} is smaller than the image size {image_size}")
    files = list_images(root)
    if not files:
        split_files(root, 0, 0)  # raises the no-images error
    names = [_relative(f, root) for f in files]
    wanted = plan(str(root.resolve()), fingerprint(root, files), names, image_size, load_size)
    path = pack_path(root, image_size, load_size) if out is None else Path(out)
    if current(path, wanted):
        return Pack(path), path, False
    if out is not None:
        _check_replaceable(path, wanted)
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # threads overlap PIL decoding, which releases the GIL
        pack = write_pack(path, wanted, _decoder(root, load_size, pool), label=f"packing {root.name or root}",
                          stop_after=stop_after)
    return pack, path, True


def _check_replaceable(out: Path, wanted: dict[str, object]) -> None:
    """Refuse to write a pack into a folder holding anything but a pack of the same folder at the same sizes (which is
    resumed, or refreshed when the folder changed): a typo in --out must never overwrite another pack or add files to
    a folder of photos."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"--out '{out}' is a file, not a folder")
    for name, key in ((INDEX, None), (JOURNAL, "plan")):
        try:
            found = json.loads((out / name).read_text().split("\n")[0])
        except (OSError, ValueError):
            continue
        found = found.get(key, {}) if key else found
        mine = {k: wanted[k] for k in ("source", "image_size", "load_size")}
        theirs = {k: found.get(k) for k in mine}
        if theirs != mine:
            raise UserError(f"--out '{out}' holds the pack of {theirs['source']} at {theirs['image_size']} px (load "
                            f"size {theirs['load_size']}); choose another --out or delete it")
        return
    if any(out.iterdir()):
        raise UserError(f"--out '{out}' is a folder that holds no pack and is not empty; choose an empty or new folder")


def split_files(root: Path, n_val: int, n_test: int, n_train: int | None = None) -> dict[str, list[Path]]:
    """The files of each split, sorted by path (see the module docstring for the rule). Raises UserError when `root` is
    missing or holds no images."""
    root = Path(root)
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise UserError(f"data folder '{root}' {what}")
    layout = (root / "train").is_dir() and (root / "test").is_dir()
    splits = split_names([_relative(f, root) for f in list_images(root)], n_val, n_test, n_train, layout=layout)
    if not any(splits.values()):
        where = " in train/ or test/" if layout else ""
        raise UserError(f"data folder '{root}' has no images{where} ({_looked_for()})")
    return {split: [root / n for n in chosen] for split, chosen in splits.items()}


def split_names(
    names: Sequence[str], n_val: int, n_test: int, n_train: int | None = None, layout: bool | None = None
) -> dict[str, list[str]]:
    """The split rule of the module docstring on relative paths ('/'-separated): the same for a folder and for a pack,
    which keeps only its files' names. `layout` (default: whether names start with both train/ and test/) says the
    splits are subfolders."""
    if layout is None:
        layout = any(n.startswith("train/") for n in names) and any(n.startswith("test/") for n in names)
    if layout:
        train = sorted((n for n in names if n.startswith("train/")), key=_path_order)
        test = _hash_order([n for n in names if n.startswith("test/")])[:n_test]
        if any(n.startswith("val/") for n in names):
            val = _hash_order([n for n in names if n.startswith("val/")])[:n_val]
        else:
            cut = max(len(train) - n_val, 0)
            train, val = train[:cut], train[cut:]
        train = _hash_order(train)[:n_train]
    else:
        ordered = _hash_order(names)
        test = ordered[:n_test]
        val = ordered[n_test : n_test + n_val]
        train = ordered[n_test + n_val :][:n_train]
    return {"train": sorted(train, key=_path_order), "val": sorted(val, key=_path_order),
            "test": sorted(test, key=_path_order)}


def _path_order(name: str) -> list[str]:
    """The order of `sorted` on Paths (part by part), which `list_images` uses: 'a/b' comes before 'a-c'."""
    return name.split("/")


CropDraws = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # tops, lefts, flips (0/1): the random part of a crop


def crop_draws(batch: int, height: int, width: int, size: int, generator: torch.Generator | None,
               device: torch.device, keep: slice = slice(None)) -> CropDraws:
    """The random part of `batch` training crops of side `size` from (height, width) images: three draws from
    `generator`, on its device, moved to `device`. Over several processes (`cebench.distributed`) `batch` is the global
    batch, drawn as one process would, and `keep` this rank's part of it."""
    draw_device = generator.device if generator is not None else device
    top = torch.randint(0, height - size + 1, (batch,), generator=generator, device=draw_device)[keep].to(device)
    left = torch.randint(0, width - size + 1, (batch,), generator=generator, device=draw_device)[keep].to(device)
    flip = torch.randint(0, 2, (batch,), generator=generator, device=draw_device)[keep].to(device)
    return top, left, flip


def crop_batch(
    images: torch.Tensor, idx: torch.Tensor, size: int, train: bool, generator: torch.Generator | None,
    draws: CropDraws | None = None,
) -> torch.Tensor:
    """float (B, 3, size, size) in [-1, 1] on images.device: random crop + random horizontal flip when train, centre
    crop otherwise.

    `images` is uint8 (N, C, H, W) in [0, 255] (a float tensor is taken to be in [0, 1]); `idx` holds B indices into it.
    All randomness comes from `generator` (three draws per call: tops, lefts, flips), drawn on the generator's device,
    so a seeded generator gives the same batch every time; or from `draws` made beforehand by `crop_draws` with the
    same effect (what a compiled training step does: it cannot take a generator). One gather, no Python loop over images.
    """
    _, channels, height, width = images.shape
    if size > height or size > width:
        raise ValueError(f"crop size {size} is larger than the images ({height}x{width})")
    device = images.device
    idx = idx.reshape(-1).to(device=device, dtype=torch.long)
    batch = idx.numel()
    if train:
        top, left, flips = draws if draws is not None else crop_draws(batch, height, width, size, generator, device)
        flip = flips.bool()
    else:
        top = torch.full((batch,), (height - size) // 2, device=device, dtype=torch.long)
        left = torch.full((batch,), (width - size) // 2, device=device, dtype=torch.long)
        flip = torch.zeros(batch, device=device, dtype=torch.bool)

    if size == height == width:  # nothing to crop (landscapes are rendered at the image size): a plain gather, 5x faster
        picked = images[idx]
        crops = torch.where(flip[:, None, None, None], picked.flip(-1), picked)
        return crops.float() / 127.5 - 1.0 if crops.dtype == torch.uint8 else crops.float() * 2.0 - 1.0

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


def _decoder(root: Path, load_size: int, pool: ThreadPoolExecutor) -> DecodeChunk:
    def decode(names: Sequence[str]) -> list[np.ndarray | None]:
        return list(pool.map(lambda name: _load_one(root / name, load_size), names))

    return decode


def _load_one(path: Path, load_size: int) -> np.ndarray | None:
    """The image at `path` resized and centre-cropped, as (L, L, 3) uint8 (a pack's row layout); None if unreadable."""
    image = read_image(path)
    return None if image is None else resize_center_crop(image, load_size).permute(1, 2, 0).numpy()


def _hash_order(names: Sequence[str]) -> list[str]:
    """`names` ordered by the SHA-1 of the relative path (ties, impossible in practice, by the path)."""
    return sorted(names, key=lambda name: (hashlib.sha1(name.encode("utf-8")).hexdigest(), name))


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
