"""`cebench inpaint` on a 12-megapixel photo (4000x3000, default hole: 1500x1125 px): the fill and blend alone, after
the photo is decoded, for a colour model and for a gray one (which also interpolates the hole's chroma). Only the hole's
neighbourhood is converted and blended, so the time should grow with the hole, not with the photo."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from benchmarks.conftest import DEVICE
from cebench.config import Variant
from cebench.inpaint import choose_hole, fill_photo
from cebench.photo import Photo
from cebench.task import Task

HEIGHT, WIDTH = 3000, 4000


@pytest.mark.parametrize("channels", ["rgb", "gray"])
def test_inpaint_12_megapixel_photo(benchmark: Any, channels: str) -> None:
    variant = Variant(image_size=64, width=16, bottleneck_dim=256, overlap=2, epochs=1, channels=channels)
    task = Task(variant)
    generator = task.build_generator().to(DEVICE).eval()
    ys, xs = np.mgrid[:HEIGHT, :WIDTH]
    pixels = np.stack([(ys // 12) % 256, (xs // 16) % 256, ((ys + xs) // 20) % 256]).astype(np.uint8)
    photo = Photo(pixels)
    hole = choose_hole(Path("photo.png"), (HEIGHT, WIDTH), task, None, None)  # the default: the centre region

    def fill() -> None:
        with torch.no_grad():
            fill_photo(task, generator, photo, hole, DEVICE)

    benchmark.pedantic(fill, rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info |= {"photo": f"{WIDTH}x{HEIGHT}", "model": f"{variant.image_size} px {channels}",
                             "load_avg_1min": os.getloadavg()[0]}
