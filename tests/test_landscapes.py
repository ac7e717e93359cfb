from __future__ import annotations

import pytest
import torch

from cebench.data import landscapes
from cebench.data.landscapes import generate, generate_range


@pytest.mark.parametrize("size", [16, 32, 128])
def test_shape_dtype_and_sizes(size: int) -> None:
    x = generate_range(0, 0, 6, size)
    assert x.shape == (6, 3, size, size) and x.dtype == torch.uint8 and x.device.type == "cpu"


def test_odd_and_degenerate_sizes_and_counts() -> None:
    assert generate_range(0, 0, 3, 1).shape == (3, 3, 1, 1)
    assert generate_range(0, 0, 2, 37).shape == (2, 3, 37, 37)
    assert generate_range(0, 5, 0, 32).shape == (0, 3, 32, 32)
    assert generate(0, torch.tensor([3]), 16, device="cpu").shape == (1, 3, 16, 16)


def test_range_is_generate_of_arange() -> None:
    assert torch.equal(generate_range(4, 10, 5, 32), generate(4, torch.arange(10, 15), 32))


def test_image_depends_only_on_seed_index_and_size() -> None:
    ref = generate_range(7, 100, 24, 32)
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(0))
    others = torch.tensor([5, 999_999, 2**40])  # unrelated images in the same batch
    mixed = generate(7, torch.cat([others, 100 + perm]), 32)
    assert torch.equal(mixed[3:], ref[perm])
    for i in (0, 13, 23):  # alone
        assert torch.equal(generate(7, torch.tensor([100 + i]), 32)[0], ref[i])
    assert torch.equal(generate_range(7, 100, 24, 32), ref)  # and again


def test_chunking_does_not_change_images(monkeypatch: pytest.MonkeyPatch) -> None:
    ref = generate_range(1, 0, 20, 32)
    monkeypatch.setattr(landscapes, "_PIXELS_PER_CHUNK", 3 * 32 * 32)  # chunks of 3 images, the last one short
    assert torch.equal(generate_range(1, 0, 20, 32), ref)


def test_worker_threads_do_not_change_images(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(landscapes, "_PIXELS_PER_CHUNK", 2 * 64 * 64)  # 4 chunks: 2 worker threads get 2 each
    torch.set_num_threads(2)
    ref = generate_range(2, 0, 8, 64)
    assert torch.get_num_threads() == 2  # restored after the call
    torch.set_num_threads(1)  # one worker renders every chunk
    assert torch.equal(generate_range(2, 0, 8, 64), ref)


def test_kernels_are_exact_across_thread_splits() -> None:
    # generate() runs torch single-threaded; _render itself must not depend on how a kernel splits its work either.
    keys = landscapes._image_keys(5, torch.arange(6))
    ref = landscapes._render(keys, 32, torch.empty(6, 3, 32, 32))
    torch.set_num_threads(1)
    assert torch.equal(landscapes._render(keys, 32, torch.empty(6, 3, 32, 32)), ref)
    assert torch.equal(landscapes._render(keys[3:4], 32, torch.empty(1, 3, 32, 32)), ref[3:4])


def test_seeds_and_indices_give_different_images() -> None:
    x = generate_range(0, 0, 32, 32).flatten(1).float()
    dist = torch.cdist(x, x)
    assert (dist + torch.eye(32) * 1e9).min() > 0  # all distinct
    assert not torch.equal(generate_range(0, 0, 4, 32), generate_range(1, 0, 4, 32))
    assert not torch.equal(generate_range(-1, 0, 4, 32), generate_range(2**32 - 1, 0, 4, 32))  # high seed bits count
    big = generate(0, torch.tensor([5, 5 + 2**32]), 32)  # high index bits count
    assert not torch.equal(big[0], big[1])


def test_float_render_is_finite_and_in_range() -> None:
    torch.set_num_threads(1)
    keys = landscapes._image_keys(3, torch.arange(16))
    img = landscapes._render(keys, 32, torch.empty(16, 3, 32, 32))
    assert torch.isfinite(img).all()
    assert img.min() > -10 and img.max() < 4 * 255  # 0-255 scale before the final clamp (the sun overshoots)


@pytest.mark.parametrize("size", [16, 32, 128])
def test_images_look_like_landscapes(size: int) -> None:
    x = generate_range(11, 0, 48 if size < 128 else 12, size).float()
    # Not flat: every image has contrast, including in the centre region an inpainter must fill.
    assert x.flatten(1).std(dim=1).min() > 15
    q = size // 4
    assert x[:, :, q:-q, q:-q].flatten(1).std(dim=1).min() > 8
    # Sky on top, land at the bottom: brighter and bluer above, in nearly every image and on average.
    k = max(1, size // 8)
    top, bottom = x[:, :, :k].mean(dim=(2, 3)), x[:, :, -k:].mean(dim=(2, 3))
    assert (top.mean(1) > bottom.mean(1)).float().mean() > 0.9
    assert (top[:, 2] - top[:, 0]).mean() > (bottom[:, 2] - bottom[:, 0]).mean() + 30
    # Horizontal layering (horizon, ridges, ground): intensity changes more down the image than across it.
    y = torch.nn.functional.avg_pool2d(x, max(1, size // 32))  # average the grain away
    assert (y[..., 1:, :] - y[..., :-1, :]).abs().mean() > 1.5 * (y[..., 1:] - y[..., :-1]).abs().mean()
    # Variety: palettes differ from image to image.
    assert x.mean(dim=(2, 3)).std(dim=0).min() > 10


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        generate(0, torch.zeros(2, 2, dtype=torch.int64))
    with pytest.raises(ValueError):
        generate(0, torch.arange(2), 0)
