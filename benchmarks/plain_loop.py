"""The reference a user would write first: fp32, a DataLoader decoding image files, the loss read every step.

Same model, batch, masks and joint loss as cebench's trainer, so the ratio of the two is the speed-up of the fast path.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from cebench.config import Variant
from cebench.masks import fill_holes, make_masks
from cebench.task import Task


class PngFolder(Dataset[torch.Tensor]):
    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        array = np.asarray(Image.open(self.files[i]).convert("RGB"), dtype=np.float32) / 127.5 - 1
        return torch.from_numpy(array).permute(2, 0, 1)


def write_pngs(images: torch.Tensor, root: Path) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    files = []
    for i, image in enumerate(images):
        path = root / f"{i:06d}.png"
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
        files.append(path)
    return files


def plain_epoch(variant: Variant, files: list[Path], device: torch.device) -> float:
    """Train one epoch the plain way; returns images/s."""
    task = Task(variant)
    g, d = task.build_generator().to(device), task.build_discriminator()
    assert d is not None
    d = d.to(device)
    opt_g = torch.optim.Adam(g.parameters(), lr=variant.lr_g, betas=(variant.beta1, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=variant.lr_d, betas=(variant.beta1, 0.999))
    loader = DataLoader(PngFolder(files), batch_size=variant.batch_size, shuffle=True, drop_last=True, num_workers=2)
    rng = torch.Generator(device).manual_seed(0)
    seen, t0 = 0, time.perf_counter()
    for real in loader:
        real = real.to(device)
        masks = make_masks(variant.mask, len(real), variant.image_size, variant.overlap, rng)  # on the images' device
        x = fill_holes(real, masks.hole, variant.fill)
        target, w = task.crop(real), task.crop(masks.loss_weights(variant.overlap_weight))
        pred = g(x)
        lr, lf = d(task.critic_input(real, target)), d(task.critic_input(real, pred.detach()))
        loss_d = F.binary_cross_entropy_with_logits(lr, torch.ones_like(lr)) + \
            F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        lg = d(task.critic_input(real, pred))
        rec = (w * (pred - target) ** 2).mean()
        loss = variant.lambda_rec * rec + variant.lambda_adv * F.binary_cross_entropy_with_logits(lg, torch.ones_like(lg))
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
        print_every_step = loss.item()  # the habit that syncs the host with the device every step
        del print_every_step
        seen += len(real)
    return seen / (time.perf_counter() - t0)
