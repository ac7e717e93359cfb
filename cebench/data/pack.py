"""Packed image folders: every image of a folder decoded, resized and centre-cropped once into one uint8 tensor file,
reused while the folder is unchanged, so folder data loads as fast as the procedural data.

The cache lives in `$CEBENCH_CACHE` (default `~/.cache/cebench`), one safetensors file per (folder, load size), named by
a hash of the folder's absolute path; a fingerprint of every file's relative path, size and mtime decides reuse.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from cebench.imageio import atomic_path, list_images


@dataclass(frozen=True)
class Pack:
    images: torch.Tensor  # uint8 (N, 3, L, L), readable files only
    files: list[str]  # relative paths of the rows of `images`
    skipped: list[str]  # relative paths of unreadable files

    def rows(self) -> dict[str, int]:
        return {f: i for i, f in enumerate(self.files)}


def cache_dir() -> Path:
    return Path(os.environ.get("CEBENCH_CACHE", Path.home() / ".cache" / "cebench"))


def pack_path(root: Path, load_size: int) -> Path:
    key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "packs" / f"{root.resolve().name}-{key}-{load_size}.safetensors"


def fingerprint(root: Path, files: Sequence[Path]) -> str:
    h = hashlib.sha1()
    for path in files:
        st = path.stat()
        h.update(f"{path.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def load_pack(root: Path, load_size: int) -> Pack | None:
    """The cached pack of `root` at `load_size`, or None when there is none or the folder changed since."""
    path = pack_path(root, load_size)
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        if meta.get("fingerprint") != fingerprint(root, list_images(root)):
            return None
        return Pack(f.get_tensor("images"), json.loads(meta["files"]), json.loads(meta["skipped"]))


def pack_folder(
    root: Path, load_size: int, decode: Callable[[Sequence[Path], int], tuple[torch.Tensor, list[Path]]]
) -> tuple[Pack, Path]:
    """Decode every image under `root` with `decode` and write the pack atomically; returns it and its path."""
    files = list_images(root)
    stamp = fingerprint(root, files)
    images, skipped_paths = decode(files, load_size)
    skipped = {p.relative_to(root).as_posix() for p in skipped_paths}
    rel = [p.relative_to(root).as_posix() for p in files]
    pack = Pack(images.contiguous(), [r for r in rel if r not in skipped], sorted(skipped))
    path = pack_path(root, load_size)
    meta = {"fingerprint": stamp, "files": json.dumps(pack.files), "skipped": json.dumps(pack.skipped),
            "root": str(root.resolve()), "load_size": str(load_size)}
    with atomic_path(path) as tmp:
        save_file({"images": pack.images}, str(tmp), metadata=meta)
    return pack, path
