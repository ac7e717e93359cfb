"""Reading and writing image files, checked against PIL and numpy: what lands in the PNG, what comes back from any file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cebench.imageio import list_images, read_image, to_unit, write_png


def test_write_png_stores_rounded_clamped_8_bit_values(tmp_path: Path) -> None:
    values = torch.tensor([-0.5, 0.0, 0.2, 0.5, 0.999, 1.0, 1.7], dtype=torch.float64)
    image = values.repeat(3, 7, 1)  # (3, 7, 7): every value in every channel
    write_png(tmp_path / "rgb.png", image)
    with Image.open(tmp_path / "rgb.png") as im:
        assert im.format == "PNG" and im.mode == "RGB"
        stored = np.asarray(im)
    expected = np.round(np.clip(values.numpy(), 0, 1) * 255).astype(np.uint8)  # [0, 0, 51, 128, 255, 255, 255]
    assert (stored == expected[None, :, None]).all()

    write_png(tmp_path / "gray.png", image[:1])
    with Image.open(tmp_path / "gray.png") as im:
        assert im.mode == "L" and (np.asarray(im) == expected[None, :]).all()
    levels = torch.arange(256, dtype=torch.uint8).view(1, 16, 16).repeat(3, 1, 1)
    write_png(tmp_path / "u8.png", levels)  # uint8 is stored as it is
    assert torch.equal(read_image(tmp_path / "u8.png"), levels)


def test_read_image_gives_rgb_from_any_mode_and_none_from_broken_files(tmp_path: Path) -> None:
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8)
    Image.fromarray(gray, mode="L").save(tmp_path / "l.png")
    rgba = np.dstack([gray, gray // 2, gray // 3, np.full_like(gray, 255)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    assert torch.equal(read_image(tmp_path / "l.png"), torch.from_numpy(np.stack([gray] * 3)))
    assert torch.equal(read_image(tmp_path / "rgba.png"), torch.from_numpy(rgba[..., :3]).permute(2, 0, 1))
    data = (tmp_path / "rgba.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_text("not an image")
    assert read_image(tmp_path / "cut.png") is None and read_image(tmp_path / "text.png") is None


def test_list_images_is_sorted_recursive_and_by_suffix(tmp_path: Path) -> None:
    for name in ("b/2.JPG", "a.png", "b/1.webp", "c/d/e.bmp", "notes.txt", "x.jpeg.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "folder.png").mkdir()  # a directory, whatever its name
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert found == ["a.png", "b/1.webp", "b/2.JPG", "c/d/e.bmp"]


def test_to_unit() -> None:
    assert torch.equal(to_unit(torch.tensor([0, 51, 255], dtype=torch.uint8)), torch.tensor([0.0, 0.2, 1.0]))
