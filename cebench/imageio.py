"""Reading and writing images: uint8 tensors (C, H, W), atomic writes, tolerant of broken files."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def list_images(root: Path) -> list[Path]:
    """Every image file under `root` (recursively), sorted by relative path so the order is reproducible."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image(path: Path) -> torch.Tensor | None:
    """Decode an image as an RGB uint8 tensor (3, H, W); None when the file is unreadable or truncated.

    16-bit grayscale PNGs are scaled to 8 bits (Pillow's own conversion clips them to white); 16-bit colour PNGs
    are already reduced to 8 bits by Pillow when it decodes them."""
    try:
        with Image.open(path) as im:
            im.load()  # force full decode so truncated files fail here, not later
            if im.mode in WIDE_GRAY_MODES:
                wide = np.asarray(im, dtype=np.float64)
                gray = np.clip(np.round(wide / WIDE_GRAY_MODES[im.mode]), 0, 255).astype(np.uint8)
                pixels = np.repeat(gray[:, :, None], 3, axis=2)
            else:
                pixels = np.asarray(im.convert("RGB")).copy()
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return None
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


# Single-channel 16-bit modes, and one 8-bit step in them (65535 / 255). "I" is how older Pillow releases open them.
WIDE_GRAY_MODES = {"I;16": 257.0, "I;16B": 257.0, "I;16L": 257.0, "I;16N": 257.0, "I": 257.0}
TEMP_MARK = ".tmp-"  # in the name of every file `atomic_path` writes before renaming it into place


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    The file is flushed to disk before the rename (so a crash leaves the old file or the new one, never a torn one) and
    gets the permissions a plain `open()` would (mkstemp's are 0600, unreadable to colleagues on a shared server). A
    process killed mid-write leaves `.NAME.tmp-*` behind: `remove_temp_files` clears those on the next start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TEMP_MARK}", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except Exception as e:
        failure = _os_error_behind(e)
        if failure is None:
            raise
        raise OSError(failure.errno, failure.strerror, str(path)) from e  # e.g. a full disk, named as such
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _os_error_behind(error: BaseException) -> OSError | None:
    """The file-system error behind a writer's failure: torch.save wraps it in a RuntimeError (as its context),
    safetensors only names it in its message ('os error 28')."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        seen = seen.__cause__ or seen.__context__
    found = re.search(r"os error (\d+)", str(error))
    return OSError(int(found.group(1)), os.strerror(int(found.group(1)))) if found else None


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def remove_temp_files(folder: Path) -> list[Path]:
    """Delete what `atomic_path` left in `folder` when its process was killed mid-write. Only call it while no other
    process can be writing there (under the spec's lock)."""
    removed = []
    for tmp in folder.glob(f".*{TEMP_MARK}*") if folder.is_dir() else ():
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_png(path: Path, image: torch.Tensor) -> None:
    """Write a uint8 (C, H, W) or float [0, 1] (C, H, W) tensor as PNG, atomically. C is 1 or 3."""
    if image.dtype != torch.uint8:
        image = (image.float().clamp(0, 1) * 255).round().to(torch.uint8)
    array = image.detach().cpu().permute(1, 2, 0).numpy()
    mode_image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    with atomic_path(path) as tmp:
        mode_image.save(tmp, format="PNG")


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [0, 1]."""
    return images.float() / 255.0
