"""Packs: a folder's images decoded, resized and centre-cropped once into a fixed-layout file read through a memory map,
so a split of any size trains without ever being held in memory whole.

A pack is a directory:

- `images.u8`: the images as raw uint8, N x L x L x C (row-major, L = load size, C = 3), nothing else: row i starts at
  byte i * L * L * C, so any reader (numpy.memmap, another language) can open it without this code;
- `index.json`: the header (format, image size the pack is for, load size, channels, count, chunk, the relative paths
  of the rows and of the unreadable files skipped, the source folder and its fingerprint), written atomically last: a
  pack without it is unfinished;
- `journal.jsonl` while packing: its first line is the plan (everything of the header but what decoding finds out),
  then one line per finished chunk of `CHUNK` source files (the rows it wrote, the files it skipped). The bytes of a
  chunk are flushed to disk before its line is, so an interrupted packing resumes after the last journalled chunk and
  ends byte-identical to one that was never interrupted; the journal is removed once the header is written.

The `folder` dataset keeps its pack in `$CEBENCH_CACHE/packs/` (default `~/.cache/cebench`), named by a hash of the
folder's absolute path and the sizes, reused while a fingerprint of every file's relative path, size and mtime matches;
`cebench data pack FOLDER --out DIR` writes one anywhere, for the `pack` dataset (`data: {name: pack, path: DIR}`).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from cebench.errors import UserError
from cebench.imageio import write_text

IMAGES, INDEX, JOURNAL = "images.u8", "index.json", "journal.jsonl"
FORMAT = 1
CHANNELS = 3
CHUNK = 256  # source files per journalled chunk: bounds the decoded images held in memory while packing
PROGRESS_MIN_FILES = 200  # show a progress bar above this many files
# The plan fields that make two packings the same work: a journal or header that differs in any is another pack.
_IDENTITY = ("format", "image_size", "load_size", "channels", "chunk", "source", "fingerprint")

# Decodes the files of one chunk: an (L, L, C) uint8 array for each, None for a file that cannot be read.
DecodeChunk = Callable[[Sequence[str]], list[np.ndarray | None]]


class Pack:
    """An opened pack: its header and the images as a read-only (N, L, L, C) uint8 array over a memory map."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        index_path = self.path / INDEX
        if not index_path.is_file():
            state = "is unfinished (packing was interrupted: rerun `cebench data pack`)" \
                if (self.path / JOURNAL).is_file() else "is not a pack (no index.json)"
            raise UserError(f"pack '{self.path}' {state}")
        try:
            self.index: dict[str, Any] = json.loads(index_path.read_text())
            shape = (int(self.index["count"]), self.load_size, self.load_size, int(self.index["channels"]))
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{index_path}: not a valid pack header ({e})") from None
        expected = int(np.prod(shape))
        size = (self.path / IMAGES).stat().st_size if (self.path / IMAGES).is_file() else -1
        if size != expected:
            raise UserError(f"pack '{self.path}' is damaged: {IMAGES} holds {size} bytes, its header says {expected}")
        self._mmap: mmap.mmap | None = None
        if expected == 0:
            self.array = np.zeros(shape, dtype=np.uint8)
        else:
            with open(self.path / IMAGES, "rb") as f:
                self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self.array = np.frombuffer(self._mmap, dtype=np.uint8).reshape(shape)

    @property
    def image_size(self) -> int:
        return int(self.index["image_size"])

    @property
    def load_size(self) -> int:
        return int(self.index["load_size"])

    @property
    def files(self) -> list[str]:
        """Relative paths ('/'-separated) of the rows, in row order (the source folder's sorted order)."""
        return list(self.index["files"])

    @property
    def skipped(self) -> list[str]:
        return list(self.index["skipped"])

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.array.shape[1:]))

    def __len__(self) -> int:
        return self.array.shape[0]

    def rows(self) -> dict[str, int]:
        return {f: i for i, f in enumerate(self.index["files"])}

    def release(self, start: int, end: int) -> None:
        """Drop rows [start, end) from this process's memory (MADV_DONTNEED): pages read once leave the resident set,
        so host memory stays flat however much of the pack was read. They stay in the page cache and are read back
        transparently if touched again."""
        if self._mmap is None or end <= start:
            return
        page = mmap.PAGESIZE
        lo = start * self.row_bytes // page * page
        hi = min(end * self.row_bytes, len(self._mmap))
        if hasattr(self._mmap, "madvise"):  # Linux and macOS; elsewhere the OS evicts pages on its own
            self._mmap.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    def read(self, rows: Sequence[int] | np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """uint8 (len(rows), C, L, L) on `device`, read chunk by chunk so no more than a chunk is ever held twice,
        releasing the pages read."""
        rows = np.asarray(rows, dtype=np.int64)
        channels, load = self.array.shape[3], self.load_size
        out = torch.empty((len(rows), channels, load, load), dtype=torch.uint8, device=device)
        for start in range(0, len(rows), CHUNK):
            part = rows[start : start + CHUNK]
            block = torch.from_numpy(np.take(self.array, part, axis=0)).permute(0, 3, 1, 2)
            out[start : start + len(part)] = block.to(device)
            self.release(int(part.min()), int(part.max()) + 1)
        return out


def cache_dir() -> Path:
    return Path(os.environ.get("CEBENCH_CACHE", Path.home() / ".cache" / "cebench"))


def pack_path(root: Path, image_size: int, load_size: int) -> Path:
    """Where the `folder` dataset keeps the pack of `root` for these sizes."""
    key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "packs" / f"{root.resolve().name}-{key}-{image_size}-{load_size}"


def fingerprint(root: Path, files: Sequence[Path]) -> str:
    h = hashlib.sha1()
    for path in files:
        st = path.stat()
        h.update(f"{path.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def plan(source: str, fingerprint: str, names: Sequence[str], image_size: int, load_size: int) -> dict[str, Any]:
    """What a packing will write, before any decoding: the journal's first line."""
    return {"format": FORMAT, "image_size": image_size, "load_size": load_size, "channels": CHANNELS, "chunk": CHUNK,
            "source": source, "fingerprint": fingerprint, "sources": list(names)}


def current(out: Path, wanted: dict[str, Any]) -> bool:
    """Whether `out` holds a finished pack of exactly this plan."""
    header = _read_json(out / INDEX)
    return header is not None and all(header.get(k) == wanted[k] for k in _IDENTITY)


def write_pack(
    out: Path, wanted: dict[str, Any], decode: DecodeChunk, *, label: str = "packing",
    stop_after: int | None = None,
) -> Pack:
    """Write the pack `wanted` (see `plan`) into `out`, resuming an interrupted packing of the same plan; returns it
    opened. Whatever else `out` held (another plan's unfinished or finished pack) is replaced.

    `stop_after` stops after that many chunks of this call, as an interruption would (for tests)."""
    out.mkdir(parents=True, exist_ok=True)
    done = _resumable(out, wanted)
    if done is None:  # nothing to resume: start clean
        for name in (INDEX, IMAGES, JOURNAL):
            (out / name).unlink(missing_ok=True)
        _append_line(out / JOURNAL, {"plan": wanted})
        done = []
    (out / INDEX).unlink(missing_ok=True)  # an unfinished pack must never look finished
    names: list[str] = wanted["sources"]
    size = int(wanted["chunk"])
    row_bytes = wanted["load_size"] ** 2 * wanted["channels"]
    rows = done[-1]["rows"][1] if done else 0
    first = len(done)
    with open(out / IMAGES, "ab") as images:
        images.truncate(rows * row_bytes)  # bytes of a chunk whose journal line never made it are written again
        images.seek(rows * row_bytes)
        with _progress(len(names), label, already=min(first * size, len(names))) as advance:
            for k in range(first, -(-len(names) // size)):
                if stop_after is not None and k - first >= stop_after:
                    raise KeyboardInterrupt(f"stopped after {stop_after} chunks")
                chunk = names[k * size : (k + 1) * size]
                decoded = decode(chunk)
                skipped = [name for name, image in zip(chunk, decoded, strict=True) if image is None]
                kept = [image for image in decoded if image is not None]
                for image in kept:
                    images.write(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
                images.flush()
                os.fsync(images.fileno())  # the bytes first, then the line that vouches for them
                done.append({"chunk": k, "rows": [rows, rows + len(kept)], "skipped": skipped})
                _append_line(out / JOURNAL, done[-1])
                rows += len(kept)
                advance(len(chunk))
    skipped_all = {name for entry in done for name in entry["skipped"]}
    header = {k: v for k, v in wanted.items() if k != "sources"}
    header.update(count=rows, files=[n for n in names if n not in skipped_all], skipped=sorted(skipped_all))
    write_text(out / INDEX, json.dumps(header))
    (out / JOURNAL).unlink(missing_ok=True)
    return Pack(out)


def _resumable(out: Path, wanted: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The finished chunks of an interrupted packing of the same plan in `out`, or None when there is none."""
    path = out / JOURNAL
    if not path.is_file() or not (out / IMAGES).is_file():
        return None
    lines = path.read_text().split("\n")
    try:
        head = json.loads(lines[0])["plan"]
    except (ValueError, KeyError, TypeError):
        return None
    if head != wanted:
        return None
    done: list[dict[str, Any]] = []
    for line in lines[1:]:
        try:
            entry = json.loads(line)
        except ValueError:
            break  # a line torn by the interruption: that chunk is packed again
        if entry.get("chunk") != len(done):
            break
        done.append(entry)
    size = (out / IMAGES).stat().st_size
    row_bytes = wanted["load_size"] ** 2 * wanted["channels"]
    while done and done[-1]["rows"][1] * row_bytes > size:  # a journalled chunk whose bytes are missing (cannot
        done.pop()                                           # happen after fsync, but a copied folder may lose them)
    # The journal is rewritten to the lines kept, so lines after a torn one never count later.
    with open(path, "w") as f:
        f.write(json.dumps({"plan": wanted}) + "\n" + "".join(json.dumps(e) + "\n" for e in done))
        f.flush()
        os.fsync(f.fileno())
    return done


def _append_line(path: Path, payload: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(payload) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


class _ImagesPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.0f} img/s" if speed else "- img/s", style="progress.data.speed")


@contextmanager
def _progress(total: int, label: str, already: int = 0) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr for large folders (interactive terminals only); yields a function that advances
    it by a number of files."""
    console = Console(stderr=True)
    if total <= PROGRESS_MIN_FILES or not console.is_terminal:
        yield lambda n: None
        return
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               _ImagesPerSecond(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=total, completed=already)
        yield lambda n: progress.advance(task, n)
