"""Training splits as batch sources: the trainer asks one for an epoch's order and then for its batches, and does not
care whether the split lives wholly on the device (`InMemory`, today's fast path) or is streamed from a pack on disk
(`Streamed`).

Both answer the same two calls:

- `order(rng)`: the epoch's visiting order, a permutation of the split's positions drawn from the trainer's generator
  (so a checkpoint's generator state gives the same order again, and a checkpoint taken mid-epoch stores it);
- `batches(order, start_step, batch_size)`: for each step from `start_step`, a pair (uint8 images (M, C, L, L) on the
  device, indices of the batch's images in them), which `image_batch` crops. In memory that is the whole split and a
  slice of the order, exactly as before; streamed it is the block of images the next steps need.

A pack's order is a permutation of its chunks and, within each window of `WINDOW_CHUNKS` consecutive chunks of that
permutation, of their images: every block of steps then reads a few contiguous stretches of the file, not images
scattered over all of it. A pack loaded whole uses the same order, so streaming changes no number.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Generator, Iterator
from typing import Protocol

import numpy as np
import torch

from cebench.data.pack import Pack

WINDOW_CHUNKS = 8  # chunks shuffled together: 8 x 256 = 2,048 images
BLOCK_IMAGES = 2048  # images gathered and sent to the device at once while the previous block trains (a multiple of
# the batch size is taken): ~0.75 GB at Pathak's load size 350, 25 MB at 64 px


class TrainSource(Protocol):
    device: torch.device

    def __len__(self) -> int: ...

    def order(self, rng: torch.Generator) -> torch.Tensor: ...

    def batches(
        self, order: torch.Tensor, start_step: int, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


def chunked_order(n: int, chunk: int, rng: torch.Generator) -> torch.Tensor:
    """A permutation of range(n) (int64, CPU): chunks of `chunk` consecutive positions in a random order, the images of
    each window of `WINDOW_CHUNKS` chunks shuffled together. One draw from `rng` seeds it (a host sync per epoch, not
    per step)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=rng, device=rng.device).item())
    g = torch.Generator().manual_seed(seed)
    n_chunks = -(-n // chunk)
    chunk_order = torch.randperm(n_chunks, generator=g)
    parts = []
    for w in range(0, n_chunks, WINDOW_CHUNKS):
        window = torch.cat([torch.arange(c * chunk, min((c + 1) * chunk, n)) for c in chunk_order[w : w + WINDOW_CHUNKS]
                            .tolist()])
        parts.append(window[torch.randperm(len(window), generator=g)])
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)


class InMemory:
    """A split held wholly on the device: uint8 (N, C, L, L). `chunk` None draws a plain permutation each epoch (the
    landscapes and folder datasets, as always); a pack's chunk size draws a pack's order (see the module docstring)."""

    def __init__(self, images: torch.Tensor, chunk: int | None = None) -> None:
        self.images, self.chunk, self.device = images, chunk, images.device

    def __len__(self) -> int:
        return len(self.images)

    def order(self, rng: torch.Generator) -> torch.Tensor:
        if self.chunk is None:
            return torch.randperm(len(self.images), generator=rng, device=self.device)
        return chunked_order(len(self.images), self.chunk, rng).to(self.device)

    def batches(
        self, order: torch.Tensor, start_step: int, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for step in range(start_step, len(order) // batch_size):
            yield self.images, order[step * batch_size : (step + 1) * batch_size]


class Streamed:
    """A split read from a pack block by block: a background thread gathers the next block's rows from the memory map
    (into pinned memory on CUDA) and copies them to the device on a side stream while the current block trains; the
    pages read are released, so host memory stays flat whatever the size of the pack.

    `rows` are the split's rows in the pack, ascending: position i of the split is pack row rows[i]."""

    def __init__(
        self, pack: Pack, rows: np.ndarray, device: torch.device, block_images: int | None = None
    ) -> None:
        self.pack, self.rows, self.device = pack, np.asarray(rows, dtype=np.int64), torch.device(device)
        self.chunk = int(pack.index["chunk"])
        self.block_images = BLOCK_IMAGES if block_images is None else block_images

    def __len__(self) -> int:
        return len(self.rows)

    def order(self, rng: torch.Generator) -> torch.Tensor:
        return chunked_order(len(self.rows), self.chunk, rng)

    def batches(
        self, order: torch.Tensor, start_step: int, batch_size: int
    ) -> Generator[tuple[torch.Tensor, torch.Tensor], None, None]:
        positions = order.cpu().numpy()  # a copy back from the device only when resuming from a checkpoint's order
        steps = len(positions) // batch_size
        per_block = max(1, self.block_images // batch_size)
        blocks = [(s, min(s + per_block, steps)) for s in range(start_step, steps, per_block)]
        feed: queue.Queue[tuple[torch.Tensor, torch.cuda.Event | None] | BaseException] = queue.Queue(maxsize=1)
        stop = threading.Event()
        worker = threading.Thread(target=self._gather, args=(positions, blocks, batch_size, feed, stop), daemon=True)
        worker.start()
        local = torch.arange(per_block * batch_size, device=self.device)
        try:
            for first, last in blocks:
                item = feed.get()
                if isinstance(item, BaseException):
                    raise item
                images, ready = item
                if ready is not None:  # the training stream waits for the copy on the GPU; the host never does
                    torch.cuda.current_stream(self.device).wait_event(ready)
                    images.record_stream(torch.cuda.current_stream(self.device))
                for k in range(last - first):
                    yield images, local[k * batch_size : (k + 1) * batch_size]
        finally:
            stop.set()
            while worker.is_alive():  # unblock a worker waiting to hand over its next block
                with contextlib.suppress(queue.Empty):
                    feed.get(timeout=0.05)

    def _gather(
        self, positions: np.ndarray, blocks: list[tuple[int, int]], batch_size: int,
        feed: queue.Queue[tuple[torch.Tensor, torch.cuda.Event | None] | BaseException], stop: threading.Event,
    ) -> None:
        cuda = self.device.type == "cuda"
        side = torch.cuda.Stream(self.device) if cuda else None
        shape = self.pack.array.shape[1:]
        # Two pinned buffers: one is gathered into while the other's copy to the device is still under way.
        hosts = [torch.empty((self.block_images_for(batch_size), *shape), dtype=torch.uint8, pin_memory=cuda)
                 for _ in range(2 if cuda else 0)]
        copies: list[torch.cuda.Event | None] = [None, None]
        try:
            for i, (first, last) in enumerate(blocks):
                if stop.is_set():
                    return
                block = positions[first * batch_size : last * batch_size]
                rows = self.rows[block]
                if cuda and side is not None:
                    host = hosts[i % 2]
                    done = copies[i % 2]
                    if done is not None:
                        done.synchronize()  # this buffer's previous copy has left it (waits here, in this thread)
                    out = host[: len(rows)]
                    # mode "clip" (the rows are valid anyway) writes straight into `out`; "raise" buffers a copy
                    np.take(self.pack.array, rows, axis=0, out=out.numpy(), mode="clip")
                    with torch.cuda.stream(side):
                        images = out.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
                        copies[i % 2] = event = torch.cuda.Event()
                        event.record(side)
                    self._release(block)
                    item: tuple[torch.Tensor, torch.cuda.Event | None] = (images, event)
                else:
                    images = torch.from_numpy(np.take(self.pack.array, rows, axis=0)).permute(0, 3, 1, 2)
                    self._release(block)
                    item = (images, None)
                while not stop.is_set():
                    try:
                        feed.put(item, timeout=0.05)
                        break
                    except queue.Full:
                        pass
        except BaseException as e:  # handed to the training thread, which raises it
            feed.put(e)

    def block_images_for(self, batch_size: int) -> int:
        return max(1, self.block_images // batch_size) * batch_size

    def _release(self, block: np.ndarray) -> None:
        """Drop the pages of the chunks a block of positions read from (whole chunks: the next block of the same window
        reads them again from the page cache, which costs no disk read)."""
        for c in np.unique(block // self.chunk):
            start, end = c * self.chunk, min((c + 1) * self.chunk, len(self.rows))
            self.pack.release(int(self.rows[start]), int(self.rows[end - 1]) + 1)
