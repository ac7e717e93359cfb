"""Context-encoder networks: encoder, bottleneck, decoder (the generator) and the adversarial discriminator.

Layer recipe from Pathak's released Torch7 code (`train.lua`, centre inpainting at 128x128), generalised to any image size
that is a power of two >= 16 and to a width multiplier so tests can use tiny models. At width 64 and 128x128 input:
encoder 3->64->64->128->256->512 (4x4 convs, stride 2), bottleneck, decoder 512->256->128->64->C up to the 64x64 hole.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


def _down(cin: int, cout: int, norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


def _up(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _log2(n: int, what: str) -> int:
    k = int(math.log2(n))
    if n < 4 or 2**k != n:
        raise ValueError(f"{what} must be a power of two >= 4, got {n}")
    return k


def encoder_channels(image_size: int, width: int) -> list[int]:
    """Output channels of each stride-2 layer down to 4x4: the last layers of Pathak's [w, w, 2w, 4w, 8w]."""
    n = _log2(image_size, "image_size") - 2
    full = [width, width, 2 * width, 4 * width, 8 * width]
    extra = [width] * max(0, n - len(full))  # images larger than 128 get more width-w layers at the top
    return (extra + full)[-n:]


class FCBottleneck(nn.Sequential):
    """Pathak's released bottleneck: a 4x4 conv to `dim` (a dense layer on the 4x4 map), then a 4x4 transposed conv back.

    At 512x4x4 and dim=4000 these two layers hold ~65.5M parameters: the reproduction paper's "fully connected layer with
    65M parameters (92% of the model)".
    """

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__(
            nn.Conv2d(channels, dim, 4, bias=False),
            nn.BatchNorm2d(dim),
            nn.LeakyReLU(0.2, inplace=True),
            nn.ConvTranspose2d(dim, channels, 4, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )


class ChannelwiseFC(nn.Module):
    """A dense n^2 -> n^2 layer per feature map, no connections between channels (Pathak et al. 2016, section 3.1)."""

    def __init__(self, channels: int, spatial: int) -> None:
        super().__init__()
        n2 = spatial * spatial
        self.weight = nn.Parameter(torch.randn(channels, n2, n2) / math.sqrt(n2))
        self.bias = nn.Parameter(torch.zeros(channels, n2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = torch.einsum("ncp,cpq->ncq", x.flatten(2), self.weight) + self.bias
        return y.view(n, c, h, w)


class ChannelwiseBottleneck(nn.Sequential):
    """Channel-wise fully connected layer followed by a stride-1 (1x1) convolution that mixes channels.

    m * n^4 + m^2 weights (~0.4M at m=512, n=4) instead of the dense bottleneck's 65M. `dim` is unused: the map keeps its shape.
    """

    def __init__(self, channels: int, dim: int, spatial: int = 4) -> None:
        super().__init__(
            ChannelwiseFC(channels, spatial),
            nn.BatchNorm2d(channels),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )


BOTTLENECKS: dict[str, Callable[[int, int], nn.Module]] = {"fc": FCBottleneck, "channelwise": ChannelwiseBottleneck}


class Generator(nn.Module):
    """Encoder -> bottleneck -> decoder. Maps a masked image (N, C, S, S) to the predicted region (N, C, P, P)."""

    def __init__(self, image_size: int, out_size: int, channels: int, width: int, bottleneck: str, dim: int) -> None:
        super().__init__()
        enc = encoder_channels(image_size, width)
        layers: list[nn.Module] = []
        cin = channels
        for i, cout in enumerate(enc):
            layers += _down(cin, cout, norm=i > 0)  # no BatchNorm on the first layer, as in DCGAN and Pathak
            cin = cout
        self.encoder = nn.Sequential(*layers)
        self.bottleneck = BOTTLENECKS[bottleneck](cin, dim)
        n_up = _log2(out_size, "hole size") - 2
        dec: list[nn.Module] = []
        for _ in range(n_up - 1):
            cout = max(width, cin // 2)
            dec += _up(cin, cout)
            cin = cout
        dec += [nn.ConvTranspose2d(cin, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.decoder = nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.bottleneck(self.encoder(x)))


class Discriminator(nn.Module):
    """DCGAN-style critic on the predicted region (`patch`) or on it plus a band of real context (`context`): one logit."""

    def __init__(self, in_size: int, channels: int, width: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin, size, i = channels, in_size, 0
        while size >= 8:  # 64 -> 32 -> 16 -> 8 -> 4; 78 -> 39 -> 19 -> 9 -> 4
            cout = width * min(8, 2**i)
            layers += _down(cin, cout, norm=i > 0)
            cin, size, i = cout, (size + 2 - 4) // 2 + 1, i + 1
        layers += [nn.Conv2d(cin, 1, size), nn.Flatten()]  # logits: the loss is BCEWithLogits, no Sigmoid here
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation, as in Pathak's code: conv weights N(0, 0.02), BatchNorm scale N(1, 0.02), bias 0."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
