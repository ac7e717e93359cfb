"""One training loop for every variant, CPU and GPU alike (in the manner of nanoGPT: read it top to bottom).

The reconstruction loss is Pathak's: squared error over the predicted region with the overlap band weighted 10x. The
joint loss adds the adversarial term with the critic on logits (`BCEWithLogits`, safe under bf16 autocast).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import torch
import torch.nn.functional as F
from rich.progress import Progress, TaskID

from cebench import distributed
from cebench.checkpoint import STATE, WEIGHTS, load_state, save_state, save_weights
from cebench.config import Variant
from cebench.data.folder import CropDraws, crop_draws
from cebench.data.source import image_batch
from cebench.data.stream import InMemory, TrainSource
from cebench.device import cuda_settings, synchronize
from cebench.errors import UserError
from cebench.evaluate import evaluate
from cebench.masks import MaskDraws, fill_holes
from cebench.metrics import summarize
from cebench.models import Generator
from cebench.task import Task

EpochCallback = Callable[[int, dict[str, float]], None]
# The fast path on CUDA replays its compiled regions as CUDA graphs; CEBENCH_CUDA_GRAPHS=0 turns them off (they have not
# run on a GPU yet: if a first GPU run fails in them, this is the way around while it is fixed).
CUDA_GRAPHS = os.environ.get("CEBENCH_CUDA_GRAPHS", "1") != "0"


def uses_cuda_graphs(device: torch.device, fast: bool) -> bool:
    return fast and CUDA_GRAPHS and device.type == "cuda"


def warmup_steps(device: torch.device, fast: bool) -> int:
    """The steps of each `fit` call timed as warm-up, not training: the first (compilation on the fast path, allocator
    growth and kernel choice on every path), and with CUDA graphs the second, which records them."""
    return 2 if uses_cuda_graphs(device, fast) else 1


class Diverged(RuntimeError):
    """A loss became NaN or infinite."""


@dataclass
class FitResult:
    generator: Generator
    history: list[dict[str, float]] = field(default_factory=list)
    train_time_s: float = 0.0  # the steps after each fit's warm-up
    images_seen: int = 0  # every image trained on, warm-up steps included
    warmup_s: float = 0.0  # the first steps of each `fit` call (compilation, allocator growth, kernel choice)
    warmup_images: int = 0

    @property
    def images_per_s(self) -> float:
        """The training rate once warm: the images of the timed steps over their time."""
        timed = self.images_seen - self.warmup_images
        return timed / self.train_time_s if self.train_time_s > 0 else 0.0


def fit(
    variant: Variant,
    train_images: torch.Tensor | TrainSource,
    val_images: torch.Tensor,
    seed: int,
    run_dir: Path,
    *,
    resume: bool = False,
    on_epoch: EpochCallback | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] = lambda line: None,
    log_every: int = 50,
    fast: bool | None = None,
    checkpoint_every_s: float = 60.0,
) -> FitResult:
    """Train `variant` on uint8 images already on the device (or a batch source, `cebench.data.stream`: a pack
    streamed to the device), with checkpoints in `run_dir`.

    `fast` (default: on for CUDA, off for CPU) trains with bf16 autocast, channels_last and `torch.compile`; off, the
    same loop runs in plain fp32, bit-reproducible on CPU, and is what a fast run is checked against. The fast path is
    the same code on every device, so the CPU tests exercise what a GPU runs.

    A checkpoint (weights, optimiser and RNG state) is written after the last epoch, after any epoch that ends at
    least `checkpoint_every_s` after the previous checkpoint, and on Ctrl-C once the step under way has finished;
    `resume` continues from it, mid-epoch if need be, to the same result.

    Under torchrun every rank calls this with the same arguments and trains its shard of each global batch of
    `batch_size` images (`cebench.distributed`); rank 0 alone writes the checkpoints.
    """
    train = InMemory(train_images) if isinstance(train_images, torch.Tensor) else train_images
    device = train.device
    fast = device.type == "cuda" if fast is None else fast
    task = Task(variant)
    torch.manual_seed(seed)
    # channels_last lets cuDNN pick its fastest NHWC kernels under bf16.
    memory_format = torch.channels_last if fast else torch.contiguous_format
    generator = task.build_generator().to(device).to(memory_format=memory_format)
    critic = task.build_discriminator()
    critic = critic.to(device).to(memory_format=memory_format) if critic is not None else None
    betas = (variant.beta1, 0.999)
    # Fused Adam: one kernel for all parameters (6x faster than foreach on CPU for the 65M fc bottleneck).
    lr_g, lr_d = variant.lr_g * variant.lr_factor, variant.lr_d * variant.lr_factor
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr_g, betas=betas, fused=True)
    opt_d = None if critic is None else torch.optim.Adam(critic.parameters(), lr=lr_d, betas=betas, fused=True)
    if fast:
        # Each fit compiles afresh, with static shapes: after a first fit, dynamo would recompile the same code for a
        # new batch size or critic with symbolic sizes (and keep them), so the second run of an ablation or a study in
        # one process would train slower, dynamic graphs than the first. (The inductor cache on disk makes the
        # recompilation cheap.)
        torch._dynamo.reset()
        # The same forward is still compiled once per critic input size within a fit (real, fake, generator's turn
        # share it): stay well clear of dynamo's default limit of 8, past which it silently falls back to eager.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    distributed.broadcast_module(generator)
    distributed.broadcast_module(critic)
    rng = torch.Generator(device).manual_seed(seed)  # every crop, flip, mask and fill comes from this stream
    size, gray = variant.image_size, variant.channels == "gray"
    # CUDA graphs replay each compiled region's kernels in one launch (the step's arithmetic at batch 64 takes less
    # time on a GPU than launching its kernels one by one). Not run yet: no GPU was available while writing this; the
    # CPU path never uses them.
    cuda_graphs = uses_cuda_graphs(device, fast)
    # Warm-up is a cost paid once per process, timed apart so that images/s is the rate of training and later runs of
    # an ablation do not look faster than the first.
    warmup_left = warmup_steps(device, fast)

    # The step's arithmetic as four functions of tensors, compiled on the fast path into one static graph each (and
    # their backward graphs), so what runs outside compiled code per step is the random draws, the backward calls and
    # the fused optimiser updates: a few operators, not the ~100 the same step dispatches eagerly.
    def prepare(images: torch.Tensor, idx: torch.Tensor, crop_u: CropDraws, mask_u: MaskDraws,
                noise: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """The batch, its masks and filled input from the step's draws; the target and loss weights of the prediction."""
        real = image_batch(images, idx, size, gray=gray, train=True, generator=None, draws=crop_u)
        masks = task.train_masks(mask_u, bs, device)  # the global batch's: its region is the loss's denominator
        region_px = task.crop(masks.region).sum() * real.shape[1] / ranks
        masks = masks[mine]
        x = fill_holes(real, masks.hole, variant.fill, noise=noise)
        return real, x, task.crop(real), task.crop(task.loss_weights(masks)), region_px

    def generator_forward(x: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                          region_px: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The prediction and Pathak's reconstruction loss."""
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
            pred = generator(x).float()
        return pred, (weights * (pred - target) ** 2).sum() / region_px

    def critic_loss(real: torch.Tensor, target: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """The critic's loss on real vs (detached) fake."""
        assert critic is not None
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
            logits_real = critic(task.critic_input(real, target)).float()
            logits_fake = critic(task.critic_input(real, fake)).float()
        return F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real)) + \
            F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))

    def generator_loss(real: torch.Tensor, pred: torch.Tensor, rec: torch.Tensor,
                       loss_d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The generator's joint loss, judged by the updated critic; and the step's (rec, adv, critic) losses."""
        assert critic is not None
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
            logits_gen = critic(task.critic_input(real, pred)).float()
        adv = F.binary_cross_entropy_with_logits(logits_gen, torch.ones_like(logits_gen))
        return variant.lambda_rec * rec + variant.lambda_adv * adv, torch.stack([rec, adv, loss_d]).detach()

    if fast:
        # prepare takes the whole split (or a streamed block): kept out of CUDA graphs, which copy their inputs.
        prepare = torch.compile(prepare, dynamic=False)
        mode = "reduce-overhead" if cuda_graphs else None
        generator_forward = torch.compile(generator_forward, dynamic=False, mode=mode)
        critic_loss = torch.compile(critic_loss, dynamic=False, mode=mode)
        generator_loss = torch.compile(generator_loss, dynamic=False, mode=mode)

    def checkpoint(epochs_done: int, step: int = 0, perm: torch.Tensor | None = None,
                   sums: torch.Tensor | None = None) -> None:
        """Everything `resume` needs, after `epochs_done` epochs and `step` steps of the next one (with its order and
        running loss sums). The state holds its own copy of the weights, so a crash between the two files never pairs
        weights of one moment with optimiser state of another; the safetensors file is what `eval` and `inpaint` read."""
        if not distributed.is_main():
            return
        save_state(run_dir / STATE, {
            "epoch": epochs_done, "step": step, "perm": perm, "sums": sums, "generator": generator.state_dict(),
            "critic": critic.state_dict() if critic is not None else {},
            "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict() if opt_d else {},
            "rng": rng.get_state(), "torch_rng": torch.get_rng_state(), "history": result.history,
            "train_time_s": result.train_time_s, "images_seen": result.images_seen, "warmup_s": result.warmup_s,
            "warmup_images": result.warmup_images,
        })
        save_weights(run_dir / WEIGHTS, generator, critic)

    result = FitResult(generator)
    start_epoch, start_step = 0, 0
    resumed_perm: torch.Tensor | None = None
    resumed_sums: torch.Tensor | None = None
    if resume and (run_dir / STATE).is_file():
        state = load_state(run_dir / STATE)
        generator.load_state_dict(state["generator"])
        if critic is not None:
            critic.load_state_dict(state["critic"])
        opt_g.load_state_dict(state["opt_g"])
        if opt_d is not None:
            opt_d.load_state_dict(state["opt_d"])
        start_epoch, start_step = int(state["epoch"]), int(state["step"])
        if state["rng"].numel() == rng.get_state().numel():
            rng.set_state(state["rng"])
        else:  # saved on another device type (CPU Mersenne Twister vs CUDA Philox): the state does not fit this one
            rng.manual_seed(seed * 1_000_003 + start_epoch * 1009 + start_step)
            log("resumed on another device type than the checkpoint's: its random stream (crops, masks) cannot move "
                "across, so it is reseeded; the run finishes, but not with the numbers of an uninterrupted one")
        torch.set_rng_state(state["torch_rng"])
        resumed_perm, resumed_sums = state["perm"], state["sums"]
        result.history = list(state["history"])
        result.train_time_s, result.images_seen = float(state["train_time_s"]), int(state["images_seen"])
        result.warmup_s, result.warmup_images = float(state.get("warmup_s", 0.0)), int(state.get("warmup_images", 0))
        log(f"resumed after {start_epoch} epochs" + (f" and {start_step} steps" if start_step else ""))
        if start_epoch == variant.epochs:  # killed between the two files of the last checkpoint: publish the weights
            save_weights(run_dir / WEIGHTS, generator, critic)

    n, bs = len(train), variant.batch_size
    if bs > n:  # cutting the batch silently would train another variant than the one recorded
        raise UserError(f"batch_size {bs} is larger than the {n} training images; lower batch_size or add images")
    steps = n // bs  # drop the last partial batch: constant shapes, BatchNorm never sees a batch of one
    ranks = distributed.world_size()
    local_bs = bs // ranks  # this process's share of each global batch (cli checks that it divides)
    mine = distributed.part(local_bs) if ranks > 1 else slice(None)  # ... and where it sits among the global draws
    task_id: TaskID | None = None
    if progress is not None:
        task_id = progress.add_task(run_dir.name, total=variant.epochs * steps,
                                    completed=start_epoch * steps + start_step, ips=0.0, info="")

    last_checkpoint = time.perf_counter()
    stop: int | None = None  # over several processes: a stop request every rank agreed on at the last log interval
    # Ctrl-C sets a flag checked between steps, so the checkpoint written on the way out holds whole steps only.
    with StopRequest() as interrupt, cuda_settings(device, fast):
        for epoch in range(start_epoch, variant.epochs):
            generator.train()
            if critic is not None:
                critic.train()
            t0 = time.perf_counter()  # the start of this epoch's timed steps (moved past warm-up steps)
            first_step, start_step = start_step, 0
            timed_steps = 0
            if resumed_perm is not None and resumed_sums is not None:  # resuming inside this epoch
                perm, sums = resumed_perm.to(device), resumed_sums.to(device)
                resumed_perm = resumed_sums = None
            else:
                sums = torch.zeros(3, device=device)  # rec, adv, critic: summed on device, read once per log interval
                perm = train.order(rng)
            batches = train.batches(distributed.shard(perm, bs), first_step, local_bs)
            for step in range(first_step, steps):
                requested = stop if ranks > 1 else interrupt.requested
                if requested is not None:  # Ctrl-C or SIGTERM: keep every finished step, then stop
                    result.train_time_s += time.perf_counter() - t0 if timed_steps else 0.0
                    result.images_seen += (step - first_step) * bs
                    checkpoint(epoch, step, perm, distributed.reduce_sums(sums, None)[0])
                    log(f"interrupted after {epoch} epochs and {step} of {steps} steps: checkpoint written")
                    raise Interrupted(requested)
                images, idx = next(batches)
                if cuda_graphs:
                    torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs are no longer read
                # The step's random draws, eagerly: a compiled graph cannot take a torch.Generator. Over several
                # processes every draw is made for the global batch and each rank keeps its share.
                crop_u = crop_draws(bs, images.shape[-2], images.shape[-1], size, rng, device, mine)
                mask_u = task.train_mask_draws(bs, rng)
                noise = torch.rand(bs, variant.n_channels, size, size, generator=rng, device=device)[mine] \
                    if variant.fill == "noise" else None
                real, x, target, weights, region_px = prepare(images, idx, crop_u, mask_u, noise)
                pred, rec = generator_forward(x, target, weights, region_px)

                if critic is not None and opt_d is not None:
                    # Critic step on real vs detached fake, then the generator is judged by the updated critic.
                    loss_d = critic_loss(real, target, pred.detach())
                    opt_d.zero_grad(set_to_none=True)
                    loss_d.backward()
                    distributed.average_gradients(critic)
                    opt_d.step()
                    # The generator's loss flows through the critic to the fake only: its weight gradients would be
                    # computed (~6% of a step's FLOPs) and then zeroed before its next step.
                    critic.requires_grad_(False)
                    loss_g, losses = generator_loss(real, pred, rec, loss_d.detach())
                    critic.requires_grad_(True)
                    sums += losses
                else:
                    loss_g = rec
                    sums[0] += rec.detach()

                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                distributed.average_gradients(generator)
                opt_g.step()

                if warmup_left > 0:  # a warm-up step: its time (up to the device finishing it) goes to warmup_s
                    warmup_left -= 1
                    synchronize(device)
                    now = time.perf_counter()
                    result.warmup_s += now - t0
                    result.warmup_images += bs
                    t0 = now
                else:
                    timed_steps += 1

                if progress is not None and task_id is not None:
                    progress.advance(task_id)
                if (progress is not None or ranks > 1) and ((step + 1) % log_every == 0 or step + 1 == steps):
                    total, stop = distributed.reduce_sums(sums, interrupt.requested)
                    means = (total / (step + 1)).tolist()  # the only host sync, once per log interval
                    _check_finite(means, epoch)
                    if progress is not None and task_id is not None:
                        elapsed = result.train_time_s + (time.perf_counter() - t0 if timed_steps else 0.0)
                        timed = result.images_seen - result.warmup_images + (step + 1 - first_step) * bs
                        ips = timed / elapsed if elapsed > 0 else 0.0
                        progress.update(task_id, ips=ips, info=f"ep {epoch + 1}/{variant.epochs} rec {means[0]:.4f}")

            rec_m, adv_m, d_m = (distributed.reduce_sums(sums, None)[0] / steps).tolist()
            _check_finite([rec_m, adv_m, d_m], epoch)
            synchronize(device)
            epoch_s = time.perf_counter() - t0 if timed_steps else 0.0
            result.train_time_s += epoch_s
            result.images_seen += (steps - first_step) * bs

            distributed.average_buffers(generator)  # BatchNorm's running statistics, the same on every rank
            distributed.average_buffers(critic)
            val = evaluate(generator, task, val_images, amp=fast) if len(val_images) else {}
            record = {"epoch": epoch + 1, "loss_rec": rec_m, "loss_adv": adv_m, "loss_d": d_m,
                      "images_per_s": timed_steps * bs / epoch_s if timed_steps else float("nan")}
            # Every harness metric of the validation split (val_psnr, val_luma_ssim, ...): tuning objectives and pruning.
            record.update({f"val_{k.removesuffix('_mean')}": v for k, v in summarize(val).items() if k.endswith("_mean")})
            result.history.append(record)
            log(" ".join(f"{k}={v:.5g}" for k, v in record.items()))

            # The 71M model with its Adam state is 0.9 GB, 1-3 s to write: every epoch would cost more than a GPU epoch
            # (15K images in ~0.3 s), so checkpoints are spaced out in time; the last epoch and a Ctrl-C always write one.
            if epoch + 1 == variant.epochs or time.perf_counter() - last_checkpoint >= checkpoint_every_s:
                checkpoint(epoch + 1)
                last_checkpoint = time.perf_counter()
            if on_epoch is not None:
                on_epoch(epoch + 1, record)

    if variant.epochs == 0:  # pretext none: the initialised network is the run's model (the random-init baseline)
        checkpoint(0)
    if progress is not None and task_id is not None:
        progress.update(task_id, visible=False)
    return result


class StopRequest:
    """While active, the first Ctrl-C (SIGINT) or SIGTERM (what schedulers and `docker stop` send) only sets
    `requested`, and `Interrupted` is raised on leaving if nothing else was; a second one stops at once. A no-op outside
    the main thread, where Python cannot install signal handlers."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested: int | None = None  # the signal received
        self._previous: dict[int, Any] = {}

    @property
    def active(self) -> bool:
        return bool(self._previous)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                if signal.getsignal(sig) != signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = signum
        for sig, previous in self._previous.items():  # the next signal acts at once
            signal.signal(sig, previous)

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
        if self.requested is not None and exc_type is None:
            raise Interrupted(self.requested)


class Interrupted(KeyboardInterrupt):
    """Training stopped at a signal's request after writing a checkpoint; `signum` says which (SIGINT or SIGTERM)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _check_finite(values: list[float], epoch: int) -> None:
    if not all(v == v and abs(v) != float("inf") for v in values):
        raise Diverged(f"loss is not finite in epoch {epoch + 1}: rec/adv/critic = {values}")
