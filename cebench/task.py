"""The inpainting task's geometry for a variant: which pixels the generator predicts, what the critic sees, how a
prediction is composited back into its context. Shared by training, evaluation and `cebench inpaint`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cebench.config import Variant
from cebench.masks import MaskDraws, Masks, center_box, make_masks, mask_draws
from cebench.models import Discriminator, Generator, init_weights


@dataclass(frozen=True)
class Task:
    variant: Variant

    @property
    def centered(self) -> bool:
        """Centre masks predict only the centre square (Pathak's 64-of-128); other masks, and the autoencoder, predict
        the whole image."""
        return self.variant.mask == "center" and self.variant.pretext != "autoencoder"

    def train_mask_draws(self, n: int, generator: torch.Generator) -> MaskDraws:
        """The random part of `n` training masks, drawn from `generator` before a compiled step runs (a compiled graph
        cannot take a generator); `train_masks` makes the masks from them."""
        v = self.variant
        return () if v.pretext == "autoencoder" else mask_draws(v.mask, n, v.image_size, generator)

    def train_masks(self, draws: MaskDraws, n: int, device: torch.device) -> Masks:
        """The training masks made from their draws. The autoencoder pretext hides nothing and predicts everything;
        evaluation still uses the variant's mask (`evaluate.eval_masks`), so every pretext is scored on the same holes."""
        v = self.variant
        if v.pretext == "autoencoder":
            shape = (n, 1, v.image_size, v.image_size)
            return Masks(hole=torch.zeros(shape, dtype=torch.bool, device=device),
                         region=torch.ones(shape, dtype=torch.bool, device=device))
        return make_masks(v.mask, n, v.image_size, v.overlap, draws=draws, device=device)

    def loss_weights(self, masks: Masks) -> torch.Tensor:
        """Per-pixel weights of the reconstruction loss: Pathak's (overlap band weighted), or uniform over the whole
        image for the autoencoder (every pixel is visible there, so none is up-weighted)."""
        if self.variant.pretext == "autoencoder":
            return masks.region.float()
        return masks.loss_weights(self.variant.overlap_weight)

    @property
    def out_size(self) -> int:
        return center_box(self.variant.image_size)[1] if self.centered else self.variant.image_size

    @property
    def context(self) -> int:
        """Real context around the prediction shown to a `context` critic, scaled from 7 px at 128."""
        if self.variant.discriminator != "context" or not self.centered:
            return 0
        return round(self.variant.context_px * self.variant.image_size / 128)

    def build_generator(self) -> Generator:
        v = self.variant
        g = Generator(v.image_size, self.out_size, v.n_channels, v.width, v.bottleneck, v.bottleneck_dim)
        g.apply(init_weights)
        return g

    def build_discriminator(self) -> Discriminator | None:
        if self.variant.loss != "joint":
            return None
        d = Discriminator(self.out_size + 2 * self.context, self.variant.n_channels, self.variant.width)
        d.apply(init_weights)
        return d

    def crop(self, full: torch.Tensor) -> torch.Tensor:
        """The predicted area of a full-size tensor (N, C, S, S): the centre square, or everything."""
        if not self.centered:
            return full
        top, side = center_box(self.variant.image_size)
        return full[..., top : top + side, top : top + side]

    def composite(self, real: torch.Tensor, pred: torch.Tensor, masks: Masks) -> torch.Tensor:
        """The full image with the prediction pasted over the region (hole + overlap band)."""
        if self.centered:
            top, side = center_box(self.variant.image_size)
            pad = self.variant.image_size - top - side
            pred = F.pad(pred, (top, pad, top, pad))
        return torch.where(masks.region, pred.to(real.dtype), real)

    def critic_input(self, real: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """What the critic judges: the predicted patch, with `context` px of the real image around it."""
        c = self.context
        if c == 0:
            return pred
        top, side = center_box(self.variant.image_size)
        around = real[..., top - c : top + side + c, top - c : top + side + c]
        inner = torch.zeros_like(around, dtype=torch.bool)
        inner[..., c : c + side, c : c + side] = True
        return torch.where(inner, F.pad(pred, (c, c, c, c)).to(around.dtype), around)
