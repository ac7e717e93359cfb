"""`cebench bench`: the headline figures for this machine, measured now: training images/s at the paper's shape, the
fraction of the GPU's bf16 peak that is, the training time of a 100-epoch paper run at that rate (plus the measured
warm-up: compilation and kernel choice; per-epoch validation and the checkpoints are not counted), and scoring
images/s."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from cebench.config import DataConfig, Variant
from cebench.data.source import load_split
from cebench.device import synchronize
from cebench.masks import make_masks
from cebench.metrics import score_batch
from cebench.registry import create_variant
from cebench.task import Task
from cebench.train import fit, warmup_steps

# Dense bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s (no sparsity: half the sheets' starred figures).
# The first key found in the device name wins, so a form factor comes before its family: NVIDIA's H100 sheet gives
# 1,979 (SXM), 1,671 (NVL) and 1,513 (PCIe) with sparsity; H200 NVL 1,671, H200 SXM 1,979.
BF16_PEAK_TFLOPS = {"H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.0, "H200 NVL": 835.0, "H200": 989.0,
                    "A100": 312.0, "L40S": 362.0, "A10": 125.0, "4090": 165.0}
PAPER_IMAGES, PAPER_EPOCHS = 15_000, 100


def step_flops(variant: Variant) -> float:
    """FLOPs of one training step per image, as `fit` runs it: G forward + backward, the critic's step on real and fake,
    and the critic again for G's loss, whose backward goes to G's output only (the critic is frozen there)."""
    task = Task(variant)
    g, d = task.build_generator(), task.build_discriminator()
    real = torch.zeros(2, variant.n_channels, variant.image_size, variant.image_size)
    with FlopCounterMode(display=False) as counter:
        pred = g(real)
        loss = ((pred - task.crop(real)) ** 2).mean()
        if d is not None:
            d(task.critic_input(real, task.crop(real))).sum().backward()
            d(task.critic_input(real, pred.detach())).sum().backward()
            d.requires_grad_(False)
            loss = loss + F.softplus(-d(task.critic_input(real, pred))).mean()
        loss.backward()
    return counter.get_total_flops() / 2


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return peak_of(torch.cuda.get_device_name(device))


def peak_of(name: str) -> float | None:
    """The dense bf16 peak of a device called `name` (as CUDA reports it), None when it is not in the table."""
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k.lower() in name.lower()), None)


def train_rate(variant: Variant, device: torch.device, steps: int, fast: bool | None = None) -> tuple[float, float]:
    """(images/s of `fit` over `steps` steps after its warm-up, seconds of that warm-up: compilation, allocator growth
    and kernel choice, which a real run pays once per process)."""
    fast = device.type == "cuda" if fast is None else fast
    n = variant.batch_size * (steps + warmup_steps(device, fast))
    images = load_split(DataConfig(n_train=n), "train", variant.image_size, device)
    with tempfile.TemporaryDirectory() as tmp:
        result = fit(variant, images, images[:0], 0, Path(tmp) / "run", fast=fast)
        return result.images_per_s, result.warmup_s


def score_rate(device: torch.device, n: int) -> float:
    """Images/s of the metric harness (all four metrics + sharpness, RGB and luma) on 128 px centre holes."""
    truth = load_split(DataConfig(n_test=n), "test", 128, device).float() / 255
    pred = (truth + 0.05 * torch.randn_like(truth)).clamp(0, 1)
    region = make_masks("center", n, 128, 4, None).region.to(device)
    batch = min(n, 2500)
    score_batch(pred[:batch], truth[:batch], region[:batch])  # warm-up at the timed size: the allocator grows here
    synchronize(device)
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        score_batch(pred[i : i + batch], truth[i : i + batch], region[i : i + batch])
    synchronize(device)
    return n / (time.perf_counter() - t0)


def headline(device: torch.device, preset: str = "landscape2023", batch_size: int | None = None,
             steps: int | None = None, fast: bool | None = None) -> dict[str, float | str | None]:
    cuda = device.type == "cuda"
    fast = cuda if fast is None else fast
    variant = create_variant(preset, batch_size=batch_size or (512 if cuda else 16), epochs=1)
    rate, warmup_s = train_rate(variant, device, steps or (50 if cuda else 4), fast)
    flops = step_flops(variant)
    peak = peak_tflops(device)
    achieved = rate * flops / 1e12
    return {
        "device": torch.cuda.get_device_name(device) if cuda else f"cpu ({torch.get_num_threads()} threads)",
        "preset": preset, "batch": variant.batch_size, "path": "fast (bf16, compile)" if fast else "plain fp32",
        "train_images_per_s": rate, "warmup_s": warmup_s,
        "gflop_per_image": flops / 1e9, "achieved_tflops": achieved,
        "fraction_of_bf16_peak": achieved / peak if peak else None,
        "paper_run_s": warmup_s + PAPER_IMAGES * PAPER_EPOCHS / rate,
        "score_images_per_s": score_rate(device, 10_000 if cuda else 500),
    }
