"""The `folder` dataset: loading, resizing, splits, broken files, and batch cropping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from cebench.data.folder import crop_batch, load_folder, resize_center_crop, split_files
from cebench.errors import UserError

L = 24  # load size used by most tests
S = 16  # crop size


def _gradient(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack(
        [x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 255 // max(w + h - 2, 1)], -1
    ).astype(np.uint8)


def _save(path: Path, array: np.ndarray, mode: str | None = None, **kwargs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    image.save(path, **kwargs)
    return path


def _mixed_folder(root: Path) -> Path:
    """Eight readable images of mixed formats, modes and aspect ratios, plus a truncated JPEG and a text file."""
    rng = np.random.default_rng(0)
    _save(root / "a.jpg", _gradient(40, 60), quality=95)
    _save(root / "b.png", _gradient(70, 30))
    _save(root / "sub" / "c.webp", _gradient(32, 32), lossless=True)
    _save(root / "sub" / "d.bmp", _gradient(20, 50))
    _save(root / "gray.png", _gradient(45, 45), mode="L")
    _save(root / "rgba.png", _gradient(30, 50), mode="RGBA")
    _save(root / "sub" / "deep" / "e.JPEG", rng.integers(0, 256, (64, 48, 3), dtype=np.uint8))
    _save(root / "f.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))  # smaller than L: upsampled
    full = root / "full.jpg"
    _save(full, rng.integers(0, 256, (80, 80, 3), dtype=np.uint8))
    (root / "truncated.jpg").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    (root / "notes.jpg").write_text("not an image")
    (root / "readme.txt").write_text("ignored: not an image suffix")
    return root


def _pil_reference(array: np.ndarray, load_size: int) -> np.ndarray:
    """Short side -> load_size with PIL's antialiased bilinear resize, then the centre square: (L, L, 3)."""
    h, w = array.shape[:2]
    scale = load_size / min(h, w)
    new_h, new_w = max(load_size, round(h * scale)), max(load_size, round(w * scale))
    resized = np.asarray(Image.fromarray(array).resize((new_w, new_h), Image.Resampling.BILINEAR))
    top, left = (new_h - load_size) // 2, (new_w - load_size) // 2
    return resized[top : top + load_size, left : left + load_size]


# --- load_folder -------------------------------------------------------------------------------------------------


def test_load_all_formats_and_skip_broken_files(tmp_path: Path) -> None:
    root = _mixed_folder(tmp_path / "imgs")
    lines: list[str] = []
    images = load_folder(root, "train", S, L, n_val=0, n_test=0, log=lines.append)
    assert images.dtype == torch.uint8
    assert images.shape == (8, 3, L, L)
    assert len(lines) == 1
    assert lines[0] == f"folder {root}: skipped 2 unreadable files (first: notes.jpg)"


def test_no_log_callback_is_fine(tmp_path: Path) -> None:
    root = _mixed_folder(tmp_path / "imgs")
    assert load_folder(root, "train", S, L, n_val=0, n_test=0).shape[0] == 8


def test_grayscale_and_rgba_become_rgb(tmp_path: Path) -> None:
    _save(tmp_path / "g" / "gray.png", np.full((30, 30), 77, dtype=np.uint8))
    gray = load_folder(tmp_path / "g", "train", S, L, n_val=0, n_test=0)
    assert gray.shape == (1, 3, L, L) and bool((gray == 77).all())
    rgba = np.zeros((30, 40, 4), dtype=np.uint8)
    rgba[..., :3] = (10, 200, 30)
    rgba[..., 3] = 255
    _save(tmp_path / "r" / "rgba.png", rgba)
    out = load_folder(tmp_path / "r", "train", S, L, n_val=0, n_test=0)
    assert out.shape == (1, 3, L, L)
    assert out[0, :, 0, 0].tolist() == [10, 200, 30]


@pytest.mark.parametrize(("h", "w"), [(40, 60), (90, 50), (30, 30), (12, 20)])
def test_short_side_resize_and_centre_crop_match_pil(tmp_path: Path, h: int, w: int) -> None:
    array = _gradient(h, w)
    _save(tmp_path / "img.png", array)
    out = load_folder(tmp_path, "train", S, L, n_val=0, n_test=0)[0].permute(1, 2, 0).numpy()
    diff = np.abs(out.astype(int) - _pil_reference(array, L).astype(int))
    assert diff.max() <= 2
    assert diff.mean() < 0.5


def test_resize_keeps_exact_size_untouched() -> None:
    image = torch.randint(0, 256, (3, L, L), dtype=torch.uint8)
    assert torch.equal(resize_center_crop(image, L), image)


def test_centre_crop_of_wide_image_keeps_the_middle() -> None:
    # 24 x 72 image, three vertical bands: only the middle band survives a centre crop at the native scale.
    image = torch.zeros(3, 24, 72, dtype=torch.uint8)
    image[:, :, 24:48] = 200
    assert bool((resize_center_crop(image, 24) == 200).all())


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist") as err:
        load_folder(tmp_path / "nope", "train", S, L, n_val=0, n_test=0)
    assert str(tmp_path / "nope") in str(err.value)


def test_path_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "x.jpg").write_text("x")
    with pytest.raises(UserError, match="is not a directory"):
        load_folder(tmp_path / "x.jpg", "train", S, L, n_val=0, n_test=0)


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(UserError, match=r"has no images.*\.jpg, \.jpeg, \.png, \.webp, \.bmp") as err:
        load_folder(tmp_path / "empty", "test", S, L, n_val=1, n_test=1)
    assert str(tmp_path / "empty") in str(err.value)


def test_empty_split(tmp_path: Path) -> None:
    for i in range(3):
        _save(tmp_path / f"{i}.png", _gradient(20, 20))
    with pytest.raises(UserError, match="train split") as err:
        load_folder(tmp_path, "train", S, L, n_val=1, n_test=2)
    assert str(tmp_path) in str(err.value)
    with pytest.raises(UserError, match=r"val split \(n_val is 0\)"):
        load_folder(tmp_path, "val", S, L, n_val=0, n_test=2)


def test_split_with_only_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "bad.jpg").write_text("nope")
    lines: list[str] = []
    with pytest.raises(UserError, match="no readable images for the train split"):
        load_folder(tmp_path, "train", S, L, n_val=0, n_test=0, log=lines.append)
    assert lines == [f"folder {tmp_path}: skipped 1 unreadable file (first: bad.jpg)"]


def test_bad_arguments(tmp_path: Path) -> None:
    _save(tmp_path / "a.png", _gradient(20, 20))
    with pytest.raises(ValueError, match="load_size"):
        load_folder(tmp_path, "train", 32, 24, n_val=0, n_test=0)
    with pytest.raises(ValueError, match="unknown split"):
        load_folder(tmp_path, "training", S, L, n_val=0, n_test=0)


def test_hash_split_is_deterministic_disjoint_and_stable(tmp_path: Path) -> None:
    for i in range(40):
        _save(tmp_path / f"d{i % 3}" / f"{i:03d}.png", np.full((4, 4, 3), i, dtype=np.uint8))
    splits = split_files(tmp_path, n_val=5, n_test=8)
    assert splits == split_files(tmp_path, n_val=5, n_test=8)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [27, 5, 8]
    sets = {k: set(v) for k, v in splits.items()}
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    assert all(v == sorted(v) for v in splits.values())
    # The split is not just the sorted order.
    assert splits["test"] != sorted(p for p in tmp_path.rglob("*.png"))[:8]
    # n_train caps train without touching test or val.
    capped = split_files(tmp_path, n_val=5, n_test=8, n_train=10)
    assert len(capped["train"]) == 10 and set(capped["train"]) <= sets["train"]
    assert capped["test"] == splits["test"] and capped["val"] == splits["val"]
    # Adding files moves at most as many test images as files were added.
    for i in range(40, 44):
        _save(tmp_path / f"{i:03d}.png", np.full((4, 4, 3), i, dtype=np.uint8))
    grown = split_files(tmp_path, n_val=5, n_test=8)
    assert len(set(grown["test"]) & sets["test"]) >= 8 - 4


def test_hash_split_loads_matching_images(tmp_path: Path) -> None:
    for i in range(12):
        _save(tmp_path / f"{i:02d}.png", np.full((30, 40, 3), i * 10, dtype=np.uint8))
    test = load_folder(tmp_path, "test", S, L, n_val=3, n_test=4)
    val = load_folder(tmp_path, "val", S, L, n_val=3, n_test=4)
    train = load_folder(tmp_path, "train", S, L, n_val=3, n_test=4)
    assert (test.shape[0], val.shape[0], train.shape[0]) == (4, 3, 5)
    colours = [set(x[:, 0, 0, 0].tolist()) for x in (train, val, test)]
    assert set.union(*colours) == {i * 10 for i in range(12)}
    assert sum(len(c) for c in colours) == 12


def test_train_test_subfolders(tmp_path: Path) -> None:
    for i in range(6):
        _save(tmp_path / "train" / f"{i}.png", np.full((20, 30, 3), 100 + i, dtype=np.uint8))
    for i in range(3):
        _save(tmp_path / "test" / f"{i}.jpg", np.full((20, 30, 3), 10 * i, dtype=np.uint8), quality=100)
    # No val/ folder: val is the last n_val of train's sorted list.
    splits = split_files(tmp_path, n_val=2, n_test=100)
    assert [p.name for p in splits["val"]] == ["4.png", "5.png"]
    assert [p.name for p in splits["train"]] == ["0.png", "1.png", "2.png", "3.png"]
    assert [p.name for p in splits["test"]] == ["0.jpg", "1.jpg", "2.jpg"]
    train = load_folder(tmp_path, "train", S, L, n_val=2, n_test=100)
    assert sorted(train[:, 0, 0, 0].tolist()) == [100, 101, 102, 103]
    assert load_folder(tmp_path, "test", S, L, n_val=2, n_test=100).shape == (3, 3, L, L)
    assert load_folder(tmp_path, "test", S, L, n_val=2, n_test=2).shape == (2, 3, L, L)
    # A val/ folder takes precedence, and train keeps all its images.
    _save(tmp_path / "val" / "v.png", np.full((20, 30, 3), 7, dtype=np.uint8))
    splits = split_files(tmp_path, n_val=2, n_test=100)
    assert [p.name for p in splits["val"]] == ["v.png"] and len(splits["train"]) == 6
    # Images directly under root are ignored in this layout.
    _save(tmp_path / "stray.png", np.zeros((20, 20, 3), dtype=np.uint8))
    assert sum(len(v) for v in split_files(tmp_path, n_val=2, n_test=100).values()) == 10


def test_empty_test_subfolder(tmp_path: Path) -> None:
    _save(tmp_path / "train" / "a.png", _gradient(20, 20))
    (tmp_path / "test").mkdir()
    with pytest.raises(UserError, match=r"test split \(test/ has no images") as err:
        load_folder(tmp_path, "test", S, L, n_val=0, n_test=10)
    assert str(tmp_path) in str(err.value)


# --- crop_batch --------------------------------------------------------------------------------------------------


def _packed(n: int = 5, size: int = 12) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 127.5 - 1.0


def test_centre_crop_exact() -> None:
    images = _packed(size=12)
    idx = torch.tensor([3, 0, 3])
    out = crop_batch(images, idx, 8, train=False, generator=None)
    assert out.shape == (3, 3, 8, 8) and out.dtype == torch.float32
    assert torch.equal(out, _unit(images[idx, :, 2:10, 2:10]))
    odd = crop_batch(_packed(size=11), torch.tensor([1]), 8, train=False, generator=None)
    assert torch.equal(odd, _unit(_packed(size=11)[1:2, :, 1:9, 1:9]))


def test_identity_when_load_size_equals_size() -> None:
    images = _packed(size=8)
    idx = torch.arange(5)
    assert torch.equal(crop_batch(images, idx, 8, train=False, generator=None), _unit(images))
    flips = crop_batch(images, idx, 8, train=True, generator=torch.Generator().manual_seed(0))
    for out, src in zip(flips, images, strict=True):
        assert torch.equal(out, _unit(src)) or torch.equal(out, _unit(src.flip(-1)))


def test_a_full_size_crop_draws_and_flips_as_any_crop() -> None:
    # Crop = image: the shortcut must keep the three draws (tops, lefts, flips), so everything drawn after it from the
    # same generator (masks, fills) is unchanged, and flip exactly the images the flips say.
    images = _packed(n=5, size=8)
    idx = torch.tensor([4, 0, 2, 2, 1, 3, 0, 4])
    gen, ref = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    out = crop_batch(images, idx, 8, train=True, generator=gen)
    torch.randint(0, 1, (8,), generator=ref), torch.randint(0, 1, (8,), generator=ref)
    flip = torch.randint(0, 2, (8,), generator=ref).bool()
    assert 0 < int(flip.sum()) < 8
    assert torch.equal(out, _unit(torch.where(flip[:, None, None, None], images[idx].flip(-1), images[idx])))
    assert torch.equal(gen.get_state(), ref.get_state())
    floats = crop_batch(images.float() / 255, idx, 8, train=False, generator=None)  # [0, 1] floats too
    assert torch.allclose(floats, _unit(images[idx]), atol=1e-6)


def test_train_crops_are_sub_windows() -> None:
    images = _packed(n=4, size=12)
    size = 7
    idx = torch.tensor([0, 1, 2, 3, 2, 1, 0, 3] * 4)
    out = crop_batch(images, idx, size, train=True, generator=torch.Generator().manual_seed(3))
    assert out.shape == (len(idx), 3, size, size)
    for crop, i in zip(out, idx.tolist(), strict=True):
        windows = [
            _unit(window)
            for top in range(12 - size + 1)
            for left in range(12 - size + 1)
            for window in (
                images[i, :, top : top + size, left : left + size],
                images[i, :, top : top + size, left : left + size].flip(-1),
            )
        ]
        assert any(torch.equal(crop, w) for w in windows)


def test_train_is_deterministic_given_the_generator() -> None:
    images = _packed(size=12)
    idx = torch.randint(0, 5, (16,), generator=torch.Generator().manual_seed(0))
    a = crop_batch(images, idx, 8, train=True, generator=torch.Generator().manual_seed(42))
    b = crop_batch(images, idx, 8, train=True, generator=torch.Generator().manual_seed(42))
    c = crop_batch(images, idx, 8, train=True, generator=torch.Generator().manual_seed(43))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_both_flips_and_many_offsets_occur() -> None:
    # One asymmetric image, crop = full width: the output is the image or its mirror, so flips are easy to count.
    image = torch.arange(8, dtype=torch.uint8).repeat(3, 10, 1)[None] * 30  # (1, 3, 10, 8)
    out = crop_batch(
        image, torch.zeros(200, dtype=torch.long), 8, train=True, generator=torch.Generator().manual_seed(0)
    )
    plain = (out[:, 0, 0, 0] == -1.0).sum().item()
    flipped = (out[:, 0, 0, -1] == -1.0).sum().item()
    assert plain + flipped == 200
    assert 60 < plain < 140
    # Offsets: a distinct value per row, so the first row tells the vertical offset.
    rows = torch.arange(12, dtype=torch.uint8).view(1, 1, 12, 1).expand(1, 3, 12, 12) * 20
    out = crop_batch(
        rows, torch.zeros(200, dtype=torch.long), 8, train=True, generator=torch.Generator().manual_seed(0)
    )
    assert len(set(out[:, 0, 0, 0].tolist())) == 5  # all of 0..4


def test_output_range_and_device() -> None:
    images = torch.tensor([0, 255], dtype=torch.uint8).repeat_interleave(50).view(1, 1, 10, 10).expand(2, 3, 10, 10)
    for train in (False, True):
        out = crop_batch(images, torch.tensor([0, 1]), 6, train=train, generator=torch.Generator().manual_seed(0))
        assert out.min() >= -1.0 and out.max() <= 1.0
        assert out.device == images.device
    full = crop_batch(images, torch.tensor([0]), 10, train=False, generator=None)
    assert full.min().item() == -1.0 and full.max().item() == 1.0


def test_crop_larger_than_images() -> None:
    with pytest.raises(ValueError, match="larger"):
        crop_batch(_packed(size=8), torch.tensor([0]), 9, train=False, generator=None)


def test_load_then_crop(tmp_path: Path) -> None:
    root = _mixed_folder(tmp_path / "imgs")
    images = load_folder(root, "train", S, L, n_val=0, n_test=0)
    batch = crop_batch(images, torch.arange(images.shape[0]), S, train=True, generator=torch.Generator().manual_seed(0))
    assert batch.shape == (8, 3, S, S)
    assert batch.min() >= -1.0 and batch.max() <= 1.0
