"""`cebench inpaint` on photos of any size and colour: only the hole changes, gray stays gray, chroma is kept, and no
input or output is ever written over."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cebench.checkpoint import WEIGHTS, save_weights, write_run_config
from cebench.cli import app
from cebench.photo import _YCC
from cebench.registry import create_variant
from cebench.task import Task
from tests.conftest import TINY, TINY_DATA

runner = CliRunner()


def make_run(root: Path, **fields: object) -> Path:
    """A run folder holding an untrained tiny model (random weights change the hole as much as trained ones do)."""
    variant = create_variant("landscape2023", **{**TINY, "overlap": 2, **fields})
    torch.manual_seed(0)
    generator = Task(variant).build_generator()
    run = root / f"run-{variant.channels}-{variant.mask}"
    write_run_config(run, variant, TINY_DATA, 0)
    save_weights(run / WEIGHTS, generator, None)
    return run


def inpaint(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, ["inpaint", *map(str, args), "--device", "cpu"])
    return result.exit_code, result.output


def photo(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(path)
    return path


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_a_non_square_photo_keeps_its_size_and_every_pixel_outside_the_seam(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    pixels = textured(90, 160)
    code, out = inpaint(run, photo(tmp_path / "wide.png", pixels), "--hole", "60,30,40,20", "--out", tmp_path / "out")
    assert code == 0, out
    filled = np.asarray(Image.open(tmp_path / "out" / "wide.png"))
    assert filled.shape == pixels.shape
    # 40 px hole onto the model's 12 px hole: 3.33 photo px per model px, so a seam of round(2 * 3.33) = 7 px.
    assert "model 32 px" in out and "upscaled 3.3x" in out
    changed = np.argwhere((filled != pixels).any(axis=2))
    assert changed[:, 0].min() >= 30 - 7 and changed[:, 0].max() < 50 + 7
    assert changed[:, 1].min() >= 60 - 7 and changed[:, 1].max() < 100 + 7
    assert (filled[30:50, 60:100] != pixels[30:50, 60:100]).any(axis=2).mean() > 0.9


def test_a_gray_photo_stays_gray(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    gray = textured(70, 50)[:, :, 0]
    code, out = inpaint(run, photo(tmp_path / "gray.png", gray), "--out", tmp_path / "out")
    assert code == 0, out
    filled = Image.open(tmp_path / "out" / "gray.png")
    assert filled.mode == "L" and filled.size == (50, 70) and " gray" in out
    assert (np.asarray(filled) != gray).any()


def test_a_gray_model_fills_luma_and_keeps_the_surrounding_chroma(tmp_path: Path) -> None:
    run = make_run(tmp_path, channels="gray")
    luma = np.random.default_rng(1).uniform(0.3, 0.7, (64, 96))
    chroma = (0.06, -0.04)  # one colour cast everywhere: the hole's chroma can only be the same
    ycc = np.stack([luma, np.full_like(luma, chroma[0]), np.full_like(luma, chroma[1])])
    rgb = np.einsum("ij,jhw->hwi", np.linalg.inv(_YCC.numpy()), ycc)
    pixels = np.round(rgb.clip(0, 1) * 255).astype(np.uint8)
    code, out = inpaint(run, photo(tmp_path / "cast.png", pixels), "--out", tmp_path / "out")
    assert code == 0, out
    filled = np.asarray(Image.open(tmp_path / "out" / "cast.png")).astype(np.float64) / 255
    got = np.einsum("ij,hwj->ihw", _YCC.numpy(), filled)
    hole = (slice(20, 44), slice(30, 66))  # the default hole: the trained centre region, 12/32 of each side
    assert np.abs(got[0][hole] - luma[hole]).mean() > 0.02  # the luma was filled by the model
    assert got[1][hole] == pytest.approx(chroma[0], abs=3 / 255) and got[2][hole] == pytest.approx(chroma[1], abs=3 / 255)


def test_a_colour_model_on_a_gray_photo_writes_gray(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    gray = np.repeat(textured(40, 40)[:, :, :1], 3, axis=2)  # saved as RGB with three equal channels
    code, out = inpaint(run, photo(tmp_path / "g.png", gray), "--out", tmp_path / "out")
    assert code == 0, out
    assert Image.open(tmp_path / "out" / "g.png").mode == "L"


def test_a_photo_smaller_than_the_model_is_filled(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    code, out = inpaint(run, photo(tmp_path / "tiny.png", textured(12, 9)), "--out", tmp_path / "out")
    assert code == 0, out
    assert "downscaled" in out and Image.open(tmp_path / "out" / "tiny.png").size == (9, 12)


def test_a_mask_image_chooses_the_hole_and_only_it_changes(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    pixels = textured(64, 64)
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 20) ** 2 + (xx - 40) ** 2 <= 8**2
    photo(tmp_path / "mask.png", (disc * 255).astype(np.uint8))
    code, out = inpaint(run, photo(tmp_path / "p.png", pixels), "--mask", tmp_path / "mask.png", "--out", tmp_path / "o")
    assert code == 0, out
    filled = np.asarray(Image.open(tmp_path / "o" / "p.png"))
    changed = (filled != pixels).any(axis=2)
    feather = 3  # round(overlap 2 * 17 / 12 photo px per model px)
    near = torch.nn.functional.max_pool2d(torch.tensor(disc, dtype=torch.float32)[None, None], 2 * feather + 1, 1,
                                          feather)[0, 0].numpy() > 0
    assert changed[disc].mean() > 0.9 and not changed[~near].any()


def test_side_by_side_puts_the_hole_the_fill_and_the_original_in_a_row(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    pixels = textured(30, 40)
    code, out = inpaint(run, photo(tmp_path / "p.png", pixels), "--side-by-side", "--out", tmp_path / "o")
    assert code == 0, out
    row = np.asarray(Image.open(tmp_path / "o" / "p_side_by_side.png"))
    assert row.shape == (30, 120, 3)
    assert np.array_equal(row[:, 80:], pixels)
    assert np.array_equal(row[:, 40:80], np.asarray(Image.open(tmp_path / "o" / "p.png")))


def test_inputs_are_never_overwritten_and_outputs_never_collide(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    first = photo(tmp_path / "p.png", textured(20, 20))
    (tmp_path / "b").mkdir()
    second = photo(tmp_path / "b" / "p.png", textured(20, 20, seed=1))
    before = first.read_bytes()
    code, out = inpaint(run, first, "--out", tmp_path)
    assert code == 2 and "is an input" in out and first.read_bytes() == before
    code, out = inpaint(run, first, second, "--out", tmp_path / "o")
    assert code == 2 and "would both be written" in out and not (tmp_path / "o").exists()


@pytest.mark.parametrize(("args", "needle"), [
    (["--hole", "10,10,50,5"], "not inside the 20x20 photo"),
    (["--hole", "1,2,3"], "expected x,y,w,h"),
    (["--hole", "1,1,4,4", "--mask", "m.png"], "pass one"),
])
def test_bad_holes_are_one_line_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    run = make_run(tmp_path)
    code, out = inpaint(run, photo(tmp_path / "p.png", textured(20, 20)), *args, "--out", tmp_path / "o")
    assert code == 2 and needle in out and "Traceback" not in out
