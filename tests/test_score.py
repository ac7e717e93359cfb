"""cebench.score: folders of PNG/JPEG files scored against an independent scikit-image computation per file."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from rich.console import Console
from scipy import ndimage
from skimage import data, filters, transform
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from cebench.errors import UserError
from cebench.masks import make_masks
from cebench.metrics import METRICS
from cebench.score import center_region, print_summary, score_dirs

TOL = 1e-9
Array = np.ndarray


# ----------------------------------------------------------------------------------------------------------------------
# Independent reference, from the files on disk


def load(path: Path) -> Array:
    """(H, W, 3) float64 in [0, 1], decoded by PIL."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0


def luma(image: Array) -> Array:
    return (image @ np.array([0.299, 0.587, 0.114]))[..., None]  # ITU-R BT.601, from the standard


def gradient(image: Array) -> Array:
    mags = [np.hypot(ndimage.sobel(image[..., c], axis=0), ndimage.sobel(image[..., c], axis=1))[1:-1, 1:-1]
            for c in range(image.shape[-1])]
    return np.stack(mags, axis=-1)


def reference(gt: Array, pred: Array, mask: Array | None = None) -> dict[str, float]:
    """Metrics of (H, W, C) images; `mask` (H, W) restricts pixel means and the border-cropped SSIM/gradient maps."""
    m = np.ones(gt.shape[:2], dtype=bool) if mask is None else mask
    diff = (pred - gt)[m]
    mse = float(np.mean(diff**2))
    _, ssim_full = structural_similarity(gt, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                         data_range=1, channel_axis=-1, full=True)
    out = {
        "l1": float(np.mean(np.abs(diff))) * 100,
        "l2": mse * 100,
        "psnr": 10 * math.log10(1 / mse),
        "ssim": float(ssim_full[5:-5, 5:-5][m[5:-5, 5:-5]].mean()),
        "sharpness": float(gradient(pred)[m[1:-1, 1:-1]].mean() / gradient(gt)[m[1:-1, 1:-1]].mean()),
    }
    if mask is None:  # the plain scikit-image entry points must agree
        ssim = structural_similarity(gt, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=1, channel_axis=-1)
        assert abs(out["ssim"] - ssim) < 1e-12
        assert abs(out["psnr"] - peak_signal_noise_ratio(gt, pred, data_range=1)) < 1e-9
    return out


def reference_all(gt: Array, pred: Array, mask: Array | None = None, gray: bool = False) -> dict[str, float]:
    if gray:
        return reference(luma(gt), pred[..., :1], mask)
    out = reference(gt, pred, mask)
    out.update({f"luma_{k}": v for k, v in reference(luma(gt), luma(pred), mask).items()})
    return out


def assert_row_matches(row: pd.Series, expected: dict[str, float]) -> None:
    for key, value in expected.items():
        dev = abs(float(row[key]) - value) / max(1.0, abs(value))
        assert dev <= TOL, f"{row['file']} {key}: {row[key]} vs {value}"


# ----------------------------------------------------------------------------------------------------------------------
# Test folders


def photo(name: str, size: int) -> Array:
    """uint8 (size, size, 3) centre square of a scikit-image photograph."""
    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    h, w = image.shape[:2]
    s = min(h, w)
    square = image[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    return (np.clip(transform.resize(square, (size, size), anti_aliasing=True), 0, 1) * 255).round().astype(np.uint8)


def synthetic(size: int, seed: int) -> Array:
    """uint8 gradient plus blurred noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    image = (yy[..., None] + xx[..., None]) / 2 * 0.6 + ndimage.gaussian_filter(rng.random((size, size, 3)), (3, 3, 0))
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def inpaint(image: Array, seed: int) -> Array:
    """A fake method's output: the image blurred in the centre half, noisy elsewhere (context differs too)."""
    rng = np.random.default_rng(seed)
    out = image.astype(np.float64) / 255
    s = image.shape[0]
    c = slice(s // 4, s // 4 + s // 2)
    out[c, c] = filters.gaussian(out, sigma=2, channel_axis=-1)[c, c] * 0.9 + 0.05
    out = out + rng.normal(0, 0.02, out.shape)
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def save(path: Path, image: Array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Five pairs: three 64 px photos, two 96 px synthetic images; one JPEG target, one pair in a subfolder."""
    pred_dir, target_dir = tmp_path / "pred", tmp_path / "target"
    items = [("astronaut", photo("astronaut", 64), ".png"), ("coffee", photo("coffee", 64), ".jpg"),
             ("sub/camera", photo("camera", 64), ".png"), ("syn0", synthetic(96, 0), ".png"),
             ("syn1", synthetic(96, 1), ".png")]
    for i, (name, image, suffix) in enumerate(items):
        save(target_dir / f"{name}{suffix}", image)
        save(pred_dir / f"{name}.png", inpaint(image, seed=i))
    return pred_dir, target_dir


def target_of(target_dir: Path, file: str) -> Path:
    stem = file.rsplit(".", 1)[0]
    (path,) = [p for p in target_dir.rglob("*") if p.is_file() and p.relative_to(target_dir).with_suffix("").as_posix()
               == stem]
    return path


def center_mask(h: int, w: int) -> Array:
    m = np.zeros((h, w), dtype=bool)
    m[h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = True
    return m


def bbox(m: Array) -> tuple[slice, slice]:
    ys, xs = np.nonzero(m)
    return slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)


# ----------------------------------------------------------------------------------------------------------------------
# Scores


def test_center_hole_matches_skimage_per_file(folders: tuple[Path, Path], tmp_path: Path) -> None:
    pred_dir, target_dir = folders
    out = tmp_path / "res" / "scores.csv"
    df = score_dirs(pred_dir, target_dir, out=out)
    assert list(df["file"]) == ["astronaut.png", "coffee.png", "sub/camera.png", "syn0.png", "syn1.png"]
    assert list(df.columns) == ["file", *METRICS, *(f"luma_{k}" for k in METRICS)]
    for _, row in df.iterrows():
        gt, pred = load(target_of(target_dir, row["file"])), load(pred_dir / row["file"])
        crop = bbox(center_mask(*gt.shape[:2]))
        assert_row_matches(row, reference_all(gt[crop], pred[crop]))
    on_disk = pd.read_csv(out)
    assert len(on_disk) == 5
    pd.testing.assert_frame_equal(on_disk, df, check_exact=False, rtol=1e-12)
    assert [p.name for p in out.parent.iterdir()] == ["scores.csv"]  # atomic write left no temporary file


def test_region_image_scores_the_composited_image(folders: tuple[Path, Path]) -> None:
    pred_dir, target_dir = folders
    df = score_dirs(pred_dir, target_dir, region="image")
    for _, row in df.iterrows():
        gt, pred = load(target_of(target_dir, row["file"])), load(pred_dir / row["file"])
        m = center_mask(*gt.shape[:2])
        composited = np.where(m[..., None], pred, gt)
        assert_row_matches(row, reference_all(gt, composited))
    assert df.attrs["region"] == "image"


def test_rectangular_mask_file(tmp_path: Path) -> None:
    pred_dir, target_dir = tmp_path / "p", tmp_path / "t"
    for i, name in enumerate(("chelsea", "astronaut")):
        gt = photo(name, 64)
        save(target_dir / f"{name}.png", gt)
        save(pred_dir / f"{name}.png", inpaint(gt, seed=10 + i))
    m = np.zeros((64, 64), dtype=bool)
    m[5:40, 20:60] = True  # off-centre rectangle
    save(tmp_path / "mask.png", (m * 255).astype(np.uint8))
    df = score_dirs(pred_dir, target_dir, mask=str(tmp_path / "mask.png"))
    for _, row in df.iterrows():
        gt, pred = load(target_dir / row["file"]), load(pred_dir / row["file"])
        assert_row_matches(row, reference_all(gt[5:40, 20:60], pred[5:40, 20:60]))


def test_irregular_mask_file(tmp_path: Path) -> None:
    pred_dir, target_dir = tmp_path / "p", tmp_path / "t"
    for i, name in enumerate(("coffee", "chelsea")):
        gt = photo(name, 64)
        save(target_dir / f"{name}.png", gt)
        save(pred_dir / f"{name}.jpg", inpaint(gt, seed=20 + i))
    m = make_masks("region", 1, 64, overlap=3).region[0, 0].numpy()
    rgb_mask = np.stack([m * 200 + 30, m * 255, m * 180 + 60], axis=-1).astype(np.uint8)  # "white" = luma > 127
    save(tmp_path / "mask.png", rgb_mask)
    df = score_dirs(pred_dir, target_dir, mask=str(tmp_path / "mask.png"))
    assert list(df["file"]) == ["chelsea.jpg", "coffee.jpg"]
    for _, row in df.iterrows():
        gt = load(target_dir / row["file"].replace(".jpg", ".png"))
        pred = np.where(m[..., None], load(pred_dir / row["file"]), gt)
        box = bbox(m)
        assert_row_matches(row, reference_all(gt[box], pred[box], m[box]))


def test_grayscale_predictions_scored_against_target_luma(tmp_path: Path) -> None:
    pred_dir, target_dir = tmp_path / "p", tmp_path / "t"
    for i, name in enumerate(("astronaut", "coffee")):
        gt = photo(name, 64)
        save(target_dir / f"{name}.png", gt)
        gray = np.round(luma(inpaint(gt, seed=30 + i).astype(np.float64))[..., 0]).astype(np.uint8)
        save(pred_dir / f"{name}.png", gray)  # mode L
    df = score_dirs(pred_dir, target_dir)
    assert df.attrs["gray"] is True
    assert list(df.columns) == ["file", *METRICS]
    for _, row in df.iterrows():
        gt, pred = load(target_dir / row["file"]), load(pred_dir / row["file"])
        crop = bbox(center_mask(64, 64))
        assert_row_matches(row, reference_all(gt[crop], pred[crop], gray=True))


def test_batching_does_not_change_scores(folders: tuple[Path, Path]) -> None:
    pred_dir, target_dir = folders
    a = score_dirs(pred_dir, target_dir, batch_size=1)
    b = score_dirs(pred_dir, target_dir, batch_size=64)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)


@pytest.mark.parametrize(("h", "w"), [(64, 64), (128, 128), (100, 100), (63, 63), (64, 96)])
def test_center_region(h: int, w: int) -> None:
    region = center_region(h, w, overlap=4)[0, 0].numpy()
    assert region.shape == (h, w)
    if h == w:
        assert np.array_equal(region, make_masks("center", 1, h, 4).region[0, 0].numpy())
    ys, xs = np.nonzero(region)
    assert (ys.min(), ys.max() + 1 - ys.min()) == ((h - h // 2) // 2, h // 2)
    assert (xs.min(), xs.max() + 1 - xs.min()) == ((w - w // 2) // 2, w // 2)
    assert region.sum() == (h // 2) * (w // 2)


def test_print_summary(folders: tuple[Path, Path]) -> None:
    df = score_dirs(*folders)
    console = Console(record=True, width=200)
    print_summary(df, console)
    text = console.export_text()
    assert "5 images" in text
    for key in df.columns[1:]:
        assert key in text
    mean, std = df["psnr"].mean(), df["psnr"].std(ddof=1)
    assert f"{mean:.3f} ± {std:.3f}" in text
    assert "SSIM: 11x11 Gaussian" in text


# ----------------------------------------------------------------------------------------------------------------------
# Errors


def one_line(exc: pytest.ExceptionInfo[UserError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_unpaired_predictions(folders: tuple[Path, Path]) -> None:
    pred_dir, target_dir = folders
    for name in ("extra1", "extra2", "extra3", "extra4"):
        save(pred_dir / f"{name}.png", synthetic(64, 5))
    with pytest.raises(UserError) as exc:
        score_dirs(pred_dir, target_dir)
    message = one_line(exc)
    assert message.startswith(f"4 prediction files have no target in {target_dir}: extra1.png, extra2.png, extra3.png")
    assert "extra4" not in message and message.endswith(", ...")


def test_unpaired_target(folders: tuple[Path, Path]) -> None:
    pred_dir, target_dir = folders
    (pred_dir / "sub" / "camera.png").unlink()
    with pytest.raises(UserError) as exc:
        score_dirs(pred_dir, target_dir)
    assert one_line(exc) == f"1 target file has no prediction in {pred_dir}: sub/camera.png"


def test_size_mismatch(folders: tuple[Path, Path]) -> None:
    pred_dir, target_dir = folders
    save(pred_dir / "syn0.png", synthetic(64, 0))
    with pytest.raises(UserError) as exc:
        score_dirs(pred_dir, target_dir)
    assert re.search(r"1 prediction differs in size .*syn0\.png \(64x64 vs target 96x96\)", one_line(exc))


@pytest.mark.parametrize("which", ["pred", "target"])
def test_empty_and_missing_folders(folders: tuple[Path, Path], tmp_path: Path, which: str) -> None:
    pred_dir, target_dir = folders
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("not an image")
    missing = tmp_path / "missing"
    for bad, pattern in ((empty, "no images"), (missing, "does not exist")):
        args = (bad, target_dir) if which == "pred" else (pred_dir, bad)
        with pytest.raises(UserError) as exc:
            score_dirs(*args)
        assert pattern in one_line(exc) and str(bad) in one_line(exc)


def test_unreadable_files(folders: tuple[Path, Path]) -> None:
    pred_dir, target_dir = folders
    garbage = pred_dir / "astronaut.png"
    garbage.write_bytes(b"not a png at all")
    with pytest.raises(UserError, match=f"cannot read image {re.escape(str(garbage))}"):
        score_dirs(pred_dir, target_dir)
    save(garbage, photo("astronaut", 64))
    truncated = target_dir / "syn1.png"
    truncated.write_bytes(truncated.read_bytes()[:200])  # header intact, pixels cut off
    with pytest.raises(UserError, match=f"cannot read image {re.escape(str(truncated))}"):
        score_dirs(pred_dir, target_dir)


def test_same_stem_twice(folders: tuple[Path, Path]) -> None:
    pred_dir, target_dir = folders
    save(pred_dir / "syn0.jpg", synthetic(96, 0))
    with pytest.raises(UserError, match=r"1 prediction name used with two extensions .*syn0"):
        score_dirs(pred_dir, target_dir)


def test_mask_file_errors(folders: tuple[Path, Path], tmp_path: Path) -> None:
    pred_dir, target_dir = folders
    mask = tmp_path / "mask.png"
    save(mask, np.full((64, 64), 255, dtype=np.uint8))
    with pytest.raises(UserError) as exc:
        score_dirs(pred_dir, target_dir, mask=str(mask))
    assert re.search(r"mask .* is 64x64 but 2 image pairs differ in size: syn0\.png, syn1\.png", one_line(exc))
    with pytest.raises(UserError, match="mask must be 'center' or an image file"):
        score_dirs(pred_dir, target_dir, mask=str(tmp_path / "nope.png"))
    save(mask, np.zeros((64, 64), dtype=np.uint8))
    with pytest.raises(UserError, match="no white"):
        score_dirs(pred_dir, target_dir, mask=str(mask))


def test_region_too_small_for_ssim(tmp_path: Path) -> None:
    save(tmp_path / "p" / "a.png", synthetic(20, 0))
    save(tmp_path / "t" / "a.png", synthetic(20, 1))
    with pytest.raises(UserError, match=r"scored region is 10x10 px .*SSIM needs at least 11x11"):
        score_dirs(tmp_path / "p", tmp_path / "t")
    assert len(score_dirs(tmp_path / "p", tmp_path / "t", region="image")) == 1


def test_bad_options(folders: tuple[Path, Path]) -> None:
    with pytest.raises(UserError, match="unknown region 'all'; valid: hole, image"):
        score_dirs(*folders, region="all")
    with pytest.raises(UserError, match="invalid device"):
        score_dirs(*folders, device="toaster")
