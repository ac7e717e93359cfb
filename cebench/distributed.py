"""One run over several processes (`torchrun --nproc-per-node N -m cebench run SPEC`): data parallelism with
`torch.distributed`, gloo on CPU and NCCL on CUDA, one process per device.

Every rank holds the same model and draws the same random numbers from the same seeded generator: the epoch's
permutation, and for each step the crops, flips, masks and fills of the whole global batch. A rank keeps its part of
them, trains on `batch_size / world_size` images (a disjoint shard of the permutation), and after each backward the
gradients are averaged over the ranks. The N-process run therefore sees exactly the images, crops and holes of the
one-process run with the same global batch, takes the same optimiser steps up to the order of float sums, and differs
only where a layer looks at the batch: BatchNorm normalises over each rank's shard (as with DistributedDataParallel).
The learning rate needs no rule of its own: the global batch is the spec's `batch_size`, so its learning rate holds.

The gradients are averaged by an explicit all-reduce of one flat buffer after each backward, not by wrapping the
networks in `DistributedDataParallel`: the critic runs three forwards around two backwards per step (real, fake, then
judging the generator) and DDP's reducer expects one forward per backward; its hooks would also all-reduce the critic's
gradients from the generator's backward, which are discarded, and split `torch.compile`'s graphs at its buckets. The
explicit all-reduce keeps the compiled step as it is and is a no-op in a single process; what it gives up is DDP's
overlap of communication with the backward.

Rank 0 alone writes (checkpoints, logs, rows, the progress bar); `on_main` runs such work there while the others wait,
and raises an error it met on every rank, so all stop together.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from cebench.errors import UserError

T = TypeVar("T")
WAIT = dt.timedelta(hours=12)  # how long ranks wait for rank 0 (scoring, a probe) before giving up
_objects: Any = None  # a gloo group for Python objects and waits: host work, never NCCL's watchdog
_devices: str | None = None  # every rank's device, in rank order, gathered once at start


def launched() -> int:
    """The number of processes torchrun started (its WORLD_SIZE), 1 without torchrun: known before `session`."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """Whether this process writes files and prints: rank 0 (torchrun's RANK), or the only process."""
    return int(os.environ.get("RANK", "0")) == 0


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """The number of processes training this run (within `session`), 1 otherwise."""
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def pick_device(name: str) -> torch.device:
    """This rank's device: `cuda:LOCAL_RANK` for auto or cuda when CUDA is present, else the CPU (gloo)."""
    local, local_n = int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if name not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device {name} with torchrun: each process takes cuda:LOCAL_RANK; valid: auto, cpu, cuda")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("--device cuda with torchrun: CUDA is not available on this machine; valid here: auto, cpu")
    if local_n > torch.cuda.device_count():
        raise UserError(f"torchrun --nproc-per-node {local_n}: this machine has {torch.cuda.device_count()} CUDA "
                        "device(s); start at most one process per device")
    return torch.device("cuda", local)


def check_batches(batch_sizes: dict[str, int]) -> None:
    """Each run's batch (`run_id: batch_size`) must split evenly over the ranks: one line naming the first that does
    not."""
    n = launched()
    for run_id, bs in batch_sizes.items():
        if bs % n:
            raise UserError(f"{run_id}: batch_size {bs} does not split over {n} processes (torchrun --nproc-per-node); "
                            f"use a batch_size divisible by {n}, or another process count")


@contextmanager
def session(device: torch.device) -> Iterator[None]:
    """The process group for this command under torchrun (nothing in a single process), destroyed on the way out."""
    global _objects, _devices
    if launched() == 1:
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if device.type == "cuda":  # NCCL for the gradients, with its default timeout: every NCCL call follows a gloo wait
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo", timeout=WAIT)
    try:
        _objects = dist.new_group(backend="gloo", timeout=WAIT) if device.type == "cuda" else dist.group.WORLD
        names: list[Any] = [None] * world_size()
        dist.all_gather_object(names, (socket.gethostname(), str(device)), group=_objects)
        hosts = {host for host, _ in names}
        _devices = ",".join(dev if len(hosts) == 1 else f"{host}/{dev}" for host, dev in names)
        yield
    finally:
        _objects = _devices = None
        dist.destroy_process_group()


def devices(device: torch.device) -> str:
    """The devices that train a run, in rank order (`cuda:0,cuda:1`, host-prefixed across machines): a results column."""
    return _devices if active() and _devices is not None else str(device)


def on_main(fn: Callable[[], T]) -> T:
    """`fn()` on rank 0 while the other ranks wait; every rank returns its result. An error of cebench's (a UserError,
    a Diverged run) is raised on every rank, so all take the same path; any other stops the others quietly."""
    if not active():
        return fn()
    from cebench.train import Diverged

    box: list[Any] = [None, None]  # result, error
    failure: BaseException | None = None
    if is_main():
        try:
            box[0] = fn()
        except (UserError, Diverged) as e:
            box[1], failure = e, e
        except BaseException as e:
            box[1], failure = UserError(f"rank 0 stopped ({type(e).__name__}); see its lines"), e
    dist.broadcast_object_list(box, src=0, group=_objects)
    if failure is not None:
        raise failure
    if box[1] is not None:
        raise box[1]
    return box[0]


def shard(order: torch.Tensor, batch_size: int) -> torch.Tensor:
    """This rank's part of an epoch's order: of each global batch of `batch_size` positions, the `batch_size / world`
    at offset `rank` (the last partial batch dropped, as training does)."""
    n = world_size()
    if n == 1:
        return order
    steps = len(order) // batch_size
    return order[: steps * batch_size].view(steps, n, batch_size // n)[:, rank()].reshape(-1)


def part(n_local: int) -> slice:
    """Where this rank's `n_local` items sit among the global batch's draws."""
    return slice(rank() * n_local, (rank() + 1) * n_local)


def average_gradients(module: nn.Module | None) -> None:
    """Average the gradients of `module` over the ranks: one all-reduce of a flat buffer (a no-op in one process)."""
    if module is None or not active():
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def average_buffers(module: nn.Module | None) -> None:
    """Average BatchNorm's running statistics over the ranks before they are used (validation) or saved. The running
    mean is an average of batch means, linear in them: the average over ranks is exactly the one-process value. The
    running variance becomes the mean of the ranks' variances (without the spread between their means)."""
    if module is None or not active():
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer /= dist.get_world_size()


def broadcast_module(module: nn.Module | None) -> None:
    """Rank 0's parameters and buffers on every rank (they are equal by the shared seed already: this makes sure)."""
    if module is None or not active():
        return
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src=0)


def reduce_sums(sums: torch.Tensor, requested: int | None) -> tuple[torch.Tensor, int | None]:
    """The running loss sums averaged over the ranks, and a stop request (Ctrl-C, SIGTERM) that any rank received:
    every rank then stops at the same step. One small all-reduce, at the log interval where the host reads the sums."""
    if not active():
        return sums, requested
    both = torch.cat([sums, sums.new_tensor([0.0 if requested is None else 1.0])])
    dist.all_reduce(both)
    stop = bool(both[-1] > 0)
    return both[:-1] / dist.get_world_size(), (requested or signal.SIGTERM) if stop else None
