"""The per-run samples.png: the image grid unchanged, each row labelled on the left."""

from __future__ import annotations

import torch
from torchvision.utils import make_grid

from cebench.evaluate import SAMPLE_ROWS, label_rows, tile


def test_rows_are_labelled_and_the_images_kept() -> None:
    grid = (make_grid(torch.rand(24, 3, 32, 32), nrow=8, padding=2, pad_value=1.0) * 255).round().to(torch.uint8)
    out = label_rows(grid, SAMPLE_ROWS)
    margin = out.shape[2] - grid.shape[2]
    assert out.shape[:2] == grid.shape[:2] and margin > 20
    assert torch.equal(out[:, :, margin:], grid)
    row = (grid.shape[1] - 2) // 3
    for i in range(3):  # dark text pixels in each row's band of the margin, none between the bands
        band = out[:, 2 + i * row : 2 + (i + 1) * row - 2, :margin]
        assert int((band < 100).sum()) > 20, SAMPLE_ROWS[i]


def test_tile_lays_images_out_as_make_grid() -> None:
    images = torch.rand(10, 3, 5, 7)  # a last row only partly filled
    for columns, padding in ((4, 2), (10, 0), (1, 3)):
        assert torch.equal(tile(images, columns, padding, 0.5),
                           make_grid(images, nrow=columns, padding=padding, pad_value=0.5))
