"""Frozen features for the linear probe: the encoder's activations on the full image (no hole), and raw pixels.

The encoder's conv layers are named conv1..convN (N = 5 at 128 px, Pathak's encoder; convN is the bottleneck's input).
Each layer's map is average-pooled to at most 4x4 so every layer gives a few thousand numbers at most (at 128 px conv4
alone would be 16K), the way linear probes of AlexNet-style encoders pool their maps.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cebench.data.source import image_batch
from cebench.errors import UserError, choices

POOLED: Final = 4  # feature maps are average-pooled to at most POOLED x POOLED
PIXELS: Final = 8  # the raw-pixel baseline: the image area-averaged to PIXELS x PIXELS (no better at full size, measured)


def layer_names(encoder: nn.Sequential) -> list[str]:
    return [f"conv{i + 1}" for i in range(sum(isinstance(m, nn.Conv2d) for m in encoder))]


def check_layers(encoder: nn.Sequential, layers: list[str]) -> None:
    valid = layer_names(encoder)
    for layer in layers:
        if layer not in valid:
            raise UserError(f"probe layer {layer!r} does not exist in this encoder; valid: {choices(valid)} "
                            f"({valid[-1]} is the bottleneck's input)")


def pool(maps: torch.Tensor) -> torch.Tensor:
    side = min(POOLED, maps.shape[-1])
    return F.adaptive_avg_pool2d(maps, side).flatten(1)


@torch.no_grad()
def encoder_features(encoder: nn.Sequential, images: torch.Tensor, size: int, gray: bool, layers: list[str],
                     batch_size: int = 256) -> dict[str, np.ndarray]:
    """{layer: (N, D) float32} for uint8 images (centre crop, eval mode: BatchNorm uses its running statistics)."""
    was_training = encoder.training
    encoder.eval()
    names = layer_names(encoder)
    out: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
    for start in range(0, len(images), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(images)), device=images.device)
        x = image_batch(images, idx, size, gray=gray, train=False, generator=None)
        conv = -1
        for module in encoder:
            x = module(x)
            conv += isinstance(module, nn.Conv2d)
            # A conv's output is read after its activation, the last module of its block.
            if isinstance(module, nn.LeakyReLU) and names[conv] in out:
                out[names[conv]].append(pool(x).float().cpu())
    encoder.train(was_training)
    return {layer: torch.cat(parts).numpy() for layer, parts in out.items()}


@torch.no_grad()
def pixel_features(images: torch.Tensor, size: int, gray: bool, batch_size: int = 256) -> np.ndarray:
    """(N, C * PIXELS^2) raw pixels in [-1, 1]: the centre crop the encoder sees, area-averaged to PIXELS x PIXELS."""
    parts = []
    for start in range(0, len(images), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(images)), device=images.device)
        x = image_batch(images, idx, size, gray=gray, train=False, generator=None)
        parts.append(F.adaptive_avg_pool2d(x, min(PIXELS, size)).flatten(1).float().cpu())
    return torch.cat(parts).numpy()
