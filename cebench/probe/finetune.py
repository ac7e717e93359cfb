"""The fine-tuning probe: the run's encoder plus a linear head, all trained for a fixed budget on the labelled split.

The same machinery as the inpainting trainer (`cebench.train.fit`): uint8 images on the device cropped and flipped by
`image_batch` from one seeded generator, fused Adam, and on CUDA the fast path (bf16 autocast, channels_last,
`torch.compile`); on CPU plain fp32, so the same run and seed give the same accuracy. The budget is fixed (epochs, lr):
no choice is made on any split, so the test split is scored once, at the end.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import nn

from cebench.data.source import image_batch
from cebench.probe.features import pool
from cebench.probe.linear import ProbeScore, score


class Classifier(nn.Module):
    """Encoder -> average-pooled to at most 4x4 (as the linear probe's features) -> one linear layer."""

    def __init__(self, encoder: nn.Sequential, n_classes: int, channels: int, size: int) -> None:
        super().__init__()
        self.encoder = encoder
        with torch.no_grad():
            n_features = pool(encoder.eval()(torch.zeros(2, channels, size, size))).shape[1]
        self.head = nn.Linear(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(pool(self.encoder(x)))


def finetune(
    encoder: nn.Sequential, train_images: torch.Tensor, train_labels: torch.Tensor, test_images: torch.Tensor,
    test_labels: torch.Tensor, n_classes: int, *, size: int, gray: bool, epochs: int, lr: float, batch_size: int,
    seed: int, progress: Progress | None = None, label: str = "finetune", fast: bool | None = None,
) -> ProbeScore:
    """Train a copy of `encoder` with a fresh linear head; the test accuracy after the last epoch."""
    device = train_images.device
    fast = device.type == "cuda" if fast is None else fast
    torch.manual_seed(seed)
    memory_format = torch.channels_last if fast else torch.contiguous_format
    model = Classifier(copy.deepcopy(encoder).cpu(), n_classes, 1 if gray else 3, size)
    model = model.to(device).to(memory_format=memory_format)
    opt = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    run = torch.compile(model) if fast else model
    rng = torch.Generator(device).manual_seed(seed)
    y = train_labels.to(device)
    n, bs = len(train_images), min(batch_size, len(train_images))
    steps = n // bs  # drop the last partial batch, as the trainer does: BatchNorm never sees a batch of one
    task_id = progress.add_task(label, total=epochs * steps, ips=0.0, info="") if progress is not None else None
    t0 = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=rng, device=device)
        for step in range(steps):
            idx = perm[step * bs : (step + 1) * bs]
            x = image_batch(train_images, idx, size, gray=gray, train=True, generator=rng)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
                logits = run(x)
            loss = F.cross_entropy(logits.float(), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if progress is not None and task_id is not None:
                progress.advance(task_id)
                if (step + 1) % 20 == 0 or step + 1 == steps:
                    ips = (epoch * steps + step + 1) * bs / (time.perf_counter() - t0)
                    progress.update(task_id, ips=ips, info=f"ep {epoch + 1}/{epochs} loss {loss.item():.3f}")
    if progress is not None and task_id is not None:
        progress.update(task_id, visible=False)
    predictions = predict(model, test_images, size, gray, fast)
    return score(predictions, test_labels.numpy(), train_labels.numpy())


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, size: int, gray: bool, fast: bool,
            batch_size: int = 256) -> np.ndarray:
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(images)), device=images.device)
        x = image_batch(images, idx, size, gray=gray, train=False, generator=None)
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=fast):
            out.append(model(x).float().argmax(1).cpu())
    return torch.cat(out).numpy()
