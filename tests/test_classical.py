"""Classical inpainting references: recomputed here with scikit-image and OpenCV called directly on the same images and
holes, and scored with numpy."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console
from skimage.restoration import inpaint_biharmonic

from cebench.classical import CLASSICAL, classical_references, classical_scores, inpaint, reference_means
from cebench.config import Variant
from cebench.data.source import load_split
from cebench.evaluate import eval_masks
from cebench.masks import LUMA
from cebench.score import print_summary, score_dirs
from cebench.task import Task
from tests.conftest import TINY, TINY_DATA


def direct(method: str, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """(H, W, C) float [0, 1] -> the library's fill, composited into the image at the hole pixels."""
    if method == "biharmonic":
        filled = inpaint_biharmonic(image, hole, channel_axis=-1)
    else:
        u8 = np.clip(np.rint(np.round(image * 255, 6)), 0, 255).astype(np.uint8)  # halves: see classical.py
        flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
        filled = cv2.inpaint(u8, hole.astype(np.uint8), 3, flag).reshape(image.shape) / 255.0
    return np.where(hole[..., None], filled, image)


@pytest.fixture(scope="module")
def test_images() -> torch.Tensor:
    return load_split(TINY_DATA, "test", TINY["image_size"], torch.device("cpu"))


@pytest.mark.parametrize("mask", ["center", "block", "region"])
@pytest.mark.parametrize("channels", ["rgb", "gray"])
def test_scores_match_scikit_image_and_opencv_called_directly(test_images: torch.Tensor, mask: str,
                                                              channels: str) -> None:
    task = Task(Variant(**TINY, mask=mask, channels=channels))
    masks = eval_masks(task, len(test_images), test_images.device)
    for method in CLASSICAL:
        scores = classical_scores(method, task, test_images)
        for i in range(len(test_images)):
            image = test_images[i].permute(1, 2, 0).numpy() / 255.0
            if channels == "gray":
                image = (image @ np.array(LUMA))[..., None]
            hole, region = masks.hole[i, 0].numpy(), masks.region[i, 0].numpy()
            if not region.any():  # a 32 px block mask can come out empty: nothing scored
                assert math.isnan(scores["psnr"][i].item())
                continue
            pred = direct(method, image, hole)
            diff = (pred - image)[region]
            # float32 per-image values, as for the models
            assert scores["psnr"][i].item() == pytest.approx(-10 * math.log10(np.mean(diff**2)), rel=1e-6)
            assert scores["l1"][i].item() == pytest.approx(100 * np.mean(np.abs(diff)), rel=1e-6)
            assert ("luma_psnr" in scores) == (channels == "rgb")


def test_only_hole_pixels_change_and_the_fill_is_plausible(test_images: torch.Tensor) -> None:
    images = test_images[:4].double() / 255
    hole = torch.zeros(4, 1, 32, 32, dtype=torch.bool)
    hole[..., 10:20, 12:22] = True
    for method in CLASSICAL:
        out = inpaint(method, images, hole)
        assert out.shape == images.shape and out.dtype == torch.float64
        assert torch.equal(out[~hole.expand_as(out)], images[~hole.expand_as(images)])
        assert out.min() >= 0 and out.max() <= 1
        # Better than a constant grey: the fill follows the surroundings.
        err = (out - images)[hole.expand_as(out)].abs().mean()
        assert err < (0.5 - images)[hole.expand_as(images)].abs().mean()
    with pytest.raises(ValueError, match="valid: biharmonic, telea, ns"):
        inpaint("patchmatch", images, hole)


def test_reference_columns_name_every_method_and_key(test_images: torch.Tensor) -> None:
    task = Task(Variant(**TINY))
    columns = classical_references(task, test_images)
    assert set(columns) == {f"{m}_{p}{k}_mean" for m in CLASSICAL for p in ("", "luma_")
                            for k in ("l1", "l2", "psnr", "ssim", "sharpness")}
    scores = classical_scores("telea", task, test_images)
    assert reference_means("telea", scores)["telea_psnr_mean"] == pytest.approx(float(scores["psnr"].mean()))


def test_cebench_score_prints_classical_references_on_the_same_holes(tmp_path: Path,
                                                                     test_images: torch.Tensor) -> None:
    pred_dir, target_dir = tmp_path / "pred", tmp_path / "target"
    pred_dir.mkdir(), target_dir.mkdir()
    for i, image in enumerate(test_images[:3]):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(target_dir / f"{i}.png")
        Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(pred_dir / f"{i}.png")
    df = score_dirs(pred_dir, target_dir, overlap=2, classical=True)
    references = df.attrs["classical"]
    hole = np.zeros((32, 32), bool)
    hole[10:22, 10:22] = True  # the centre 16 px region less its 2 px overlap band
    region = np.zeros((32, 32), bool)
    region[8:24, 8:24] = True
    for _, row in references.iterrows():
        image = np.asarray(Image.open(target_dir / row["file"]), np.float64) / 255
        for method in CLASSICAL:
            diff = (direct(method, image, hole) - image)[region]
            assert row[f"{method}_psnr"] == pytest.approx(-10 * math.log10(np.mean(diff**2)), abs=1e-9)
    console = Console(record=True, width=200)
    print_summary(df, console)
    text = console.export_text()
    assert "these predictions" in text and all(m in text for m in CLASSICAL)
    assert "NOT ahead of the best classical reference" in text  # a flat grey fill loses to every one of them


def test_a_luma_on_an_exact_half_rounds_the_same_whatever_its_last_bit() -> None:
    # Summation order (BLAS, thread count) moves a luma of exactly 127.5/255 by an ulp either way; the 8-bit image that
    # OpenCV sees must not depend on it.
    half = 127.5 / 255
    hole = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    hole[..., 6:10, 6:10] = True
    fills = [inpaint("telea", torch.full((1, 1, 16, 16), v, dtype=torch.float64), hole)[hole]
             for v in (np.nextafter(half, 0), half, np.nextafter(half, 1))]
    assert torch.equal(fills[0], fills[1]) and torch.equal(fills[1], fills[2])
