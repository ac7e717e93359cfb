"""`cebench inpaint` on photos of any shape, channels and depth, with untrained tiny models saved as run folders.

A "flat" model (its last layer zeroed) predicts mid-gray everywhere, so what a test sees in the hole is known exactly."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cebench.checkpoint import WEIGHTS, save_weights, write_run_config
from cebench.cli import app
from cebench.config import DataConfig, Variant
from cebench.models import Generator
from cebench.photo import chroma, membrane_fill
from cebench.task import Task

runner = CliRunner()
MODEL = 32
OVERLAP = 2
LO, HI = 10, 22  # the centre model's hole at 32 px: centre square 8..24 less the 2 px overlap band


def make_run(root: Path, flat: bool = False, **overrides: Any) -> Path:
    """An untrained tiny run folder (what `eval` and `inpaint` read): run.json and model.safetensors."""
    variant = Variant(image_size=MODEL, width=8, bottleneck_dim=32, overlap=OVERLAP, epochs=1, **overrides)
    torch.manual_seed(0)
    generator = Task(variant).build_generator()
    if flat:
        torch.nn.init.zeros_(generator.decoder[-2].weight)  # tanh(0): mid-gray, in every channel
    run = root / "_".join(["run", *(f"{k}-{v}" for k, v in overrides.items()), "flat" * flat])
    run.mkdir(parents=True)
    write_run_config(run, variant, DataConfig(), seed=0)
    save_weights(run / WEIGHTS, generator, None)
    return run


def invoke(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args] + ["--device", "cpu"])
    return result.exit_code, result.output


def save(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(path)
    return path


def noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def centre_hole(height: int, width: int) -> np.ndarray:
    """The default hole: the model's centre hole, scaled to the photo's height and width."""
    hole = np.zeros((height, width), dtype=bool)
    hole[height * LO // MODEL : math.ceil(height * HI / MODEL), width * LO // MODEL : math.ceil(width * HI / MODEL)] = True
    return hole


def near(hole: np.ndarray, px: int) -> np.ndarray:
    """The hole grown by `px` pixels (square neighbourhood)."""
    out = hole.copy()
    for dy in range(-px, px + 1):
        for dx in range(-px, px + 1):
            out |= np.roll(np.roll(hole, dy, 0), dx, 1)
    return out


def upscale(out: str) -> float:
    found = re.search(rf"model {MODEL} px; hole (?:upscaled ([\d.]+)x|not upscaled \(([\d.]+)x\))", out)
    assert found is not None, out
    return float(found.group(1) or found.group(2))


def feather(out: str) -> int:
    """The seam's width in photo pixels, bounded from the printed upscale factor (rounded to 0.1)."""
    return math.ceil(OVERLAP * (upscale(out) + 0.05)) + 1


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {"rgb": make_run(root), "gray": make_run(root, channels="gray"), "flat": make_run(root, flat=True),
            "flat_gray": make_run(root, flat=True, channels="gray"), "block": make_run(root, flat=True, mask="block")}


def test_non_square_photo_keeps_its_size_and_everything_outside_the_hole(runs: dict[str, Path], tmp_path: Path) -> None:
    photo = noise((40, 70, 3))
    code, out = invoke("inpaint", runs["rgb"], save(tmp_path / "wide.png", photo), "--out", tmp_path / "filled")
    assert code == 0, out
    filled = np.asarray(Image.open(tmp_path / "filled" / "wide.png"))
    assert filled.shape == photo.shape
    hole = centre_hole(40, 70)
    outside = ~near(hole, feather(out))
    assert outside.sum() > 0.3 * outside.size and np.array_equal(filled[outside], photo[outside])
    assert (filled[hole] != photo[hole]).mean() > 0.9
    assert upscale(out) == pytest.approx(math.ceil(hole.sum(1).max() * MODEL / (HI - LO)) / MODEL, abs=0.05)


def test_a_photo_of_the_models_size_is_filled_exactly_as_the_model_sees_it(runs: dict[str, Path], tmp_path: Path) -> None:
    photo = noise((MODEL, MODEL, 3), seed=1)
    code, out = invoke("inpaint", runs["flat"], save(tmp_path / "p.png", photo), "--out", tmp_path / "f")
    assert code == 0 and "hole not upscaled (1.00x)" in out, out
    filled = np.asarray(Image.open(tmp_path / "f" / "p.png"))
    assert (filled[LO:HI, LO:HI] == 128).all()  # the flat model's mid-gray, no resampling
    outside = ~near(centre_hole(MODEL, MODEL), OVERLAP + 1)
    assert np.array_equal(filled[outside], photo[outside])


def test_gray_photos_stay_gray_at_their_depth(runs: dict[str, Path], tmp_path: Path) -> None:
    gray8 = noise((36, 28), seed=2)
    gray16 = np.random.default_rng(3).integers(0, 65536, (36, 28), dtype=np.uint16)
    save(tmp_path / "g8.png", gray8)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    code, out = invoke("inpaint", runs["rgb"], tmp_path / "g8.png", tmp_path / "g16.png", "--out", tmp_path / "f")
    assert code == 0 and out.count("gray) ->") == 2, out
    outside = ~near(centre_hole(36, 28), feather(out))
    for name, original, mode in (("g8", gray8, "L"), ("g16", gray16, "I;16")):
        with Image.open(tmp_path / "f" / f"{name}.png") as im:
            assert im.mode == mode
            filled = np.asarray(im)
        assert filled.shape == original.shape and np.array_equal(filled[outside], original[outside])


def test_a_gray_photo_saved_as_rgb_is_written_gray(runs: dict[str, Path], tmp_path: Path) -> None:
    gray = noise((24, 20), seed=9)
    code, out = invoke("inpaint", runs["rgb"], save(tmp_path / "g.png", np.repeat(gray[:, :, None], 3, axis=2)),
                       "--out", tmp_path / "f")
    assert code == 0 and "gray) ->" in out, out
    with Image.open(tmp_path / "f" / "g.png") as im:
        assert im.mode == "L"
        outside = ~near(centre_hole(24, 20), feather(out))
        assert np.array_equal(np.asarray(im)[outside], gray[outside])


def test_a_gray_model_fills_a_colour_photo_in_luma_with_the_contexts_chroma(runs: dict[str, Path],
                                                                           tmp_path: Path) -> None:
    """Chroma in the hole is interpolated from the context's (a membrane): a context of one chroma gives the hole that
    chroma, whatever colour was in the hole before."""
    shade = np.random.default_rng(4).integers(-30, 31, (48, 40, 1))  # luma texture: the same offset in R, G and B
    photo = np.clip(np.array([150, 110, 90]) + shade, 0, 255).astype(np.uint8)
    hole = centre_hole(48, 40)
    photo[hole] = (20, 220, 40)  # green in the hole: none of it may survive
    code, out = invoke("inpaint", runs["flat_gray"], save(tmp_path / "c.png", photo), "--out", tmp_path / "f")
    assert code == 0 and "colour) ->" in out, out
    filled = np.asarray(Image.open(tmp_path / "f" / "c.png")).astype(np.float64)
    assert filled.shape == photo.shape
    context = chroma(np.array([150, 110, 90], dtype=np.float64)[:, None, None])[:, 0, 0]
    in_hole = chroma(filled[hole].T[:, :, None])[:, :, 0]
    assert np.abs(in_hole - context[:, None]).max() <= 1.0  # within 8-bit rounding
    assert np.abs(filled[hole] @ np.array([0.299, 0.587, 0.114]) - 127.5).max() <= 1.0  # the flat model's luma


def test_membrane_fill_interpolates_between_the_surroundings() -> None:
    ramp = np.tile(np.linspace(-0.3, 0.2, 40), (1, 30, 1))  # linear: the membrane reproduces it
    hole = np.zeros((30, 40), dtype=bool)
    hole[5:25, 8:33] = True
    filled = membrane_fill(np.where(hole, 5.0, ramp), hole)
    assert np.abs(filled - ramp).max() < 2e-3


def test_tiny_photo_smaller_than_the_model(runs: dict[str, Path], tmp_path: Path) -> None:
    photo = noise((10, 12, 3), seed=5)
    code, out = invoke("inpaint", runs["rgb"], save(tmp_path / "t.png", photo), "--out", tmp_path / "f")
    assert code == 0 and "not upscaled" in out, out
    filled = np.asarray(Image.open(tmp_path / "f" / "t.png"))
    hole = centre_hole(10, 12)
    assert filled.shape == photo.shape and np.array_equal(filled[~near(hole, 2)], photo[~near(hole, 2)])
    code, out = invoke("inpaint", runs["rgb"], save(tmp_path / "one.png", noise((1, 1, 3))), "--out", tmp_path / "f")
    assert code == 2 and "nothing is left to fill it from" in out and not (tmp_path / "f" / "one.png").exists()


@pytest.mark.parametrize("model", ["flat", "block"])
def test_hole_and_mask_choose_the_region(runs: dict[str, Path], tmp_path: Path, model: str) -> None:
    photo = noise((50, 60, 3), seed=6)
    hole = np.zeros((50, 60), dtype=bool)
    hole[30:42, 6:26] = True  # off-centre, wide
    save(tmp_path / "mask.png", np.where(hole, 255, 0).astype(np.uint8))
    for how, args in (("box", ["--hole", "6,30,20,12"]), ("mask", ["--mask", tmp_path / "mask.png"])):
        code, out = invoke("inpaint", runs[model], save(tmp_path / "p.png", photo), "--out", tmp_path / how, *args)
        assert code == 0, out
        filled = np.asarray(Image.open(tmp_path / how / "p.png")).astype(int)
        assert (np.abs(filled[hole] - 128) <= 1).all()  # the flat model's mid-gray fills exactly the chosen hole
        outside = ~near(hole, feather(out))
        assert np.array_equal(filled[outside], photo[outside])


@pytest.mark.parametrize(("args", "needle"), [
    (["--hole", "1,2,3"], "expected x,y,w,h"),
    (["--hole", "50,10,20,10"], "reaches past the edge of"),
    (["--hole", "1,1,0,4"], "w and h >= 1"),
    (["--mask", "{tmp}/nope.png"], "nope.png: no such file"),
    (["--mask", "{tmp}/small.png"], "the mask must have the photo's size"),
    (["--mask", "{tmp}/black.png"], "no white pixels"),
    (["--hole", "1,1,4,4", "--mask", "{tmp}/black.png"], "--hole and --mask both given"),
])
def test_bad_holes_are_one_line_exit_2(runs: dict[str, Path], tmp_path: Path, args: list[str], needle: str) -> None:
    save(tmp_path / "small.png", np.zeros((8, 8), dtype=np.uint8))
    save(tmp_path / "black.png", np.zeros((30, 60), dtype=np.uint8))
    photo = save(tmp_path / "p.png", noise((30, 60, 3)))
    code, out = invoke("inpaint", runs["rgb"], photo, "--out", tmp_path / "f",
                       *(a.format(tmp=tmp_path) for a in args))
    assert code == 2 and needle in out and "Traceback" not in out, out
    assert len(out.strip().splitlines()) == 1 and not (tmp_path / "f").exists()


def test_refuses_to_overwrite_an_input_or_write_two_outputs_to_one_path(runs: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = save(tmp_path / "a" / "photo.png", noise((20, 24, 3)))
    second = save(tmp_path / "b" / "photo.jpg", noise((20, 24, 3), seed=1))
    other = save(tmp_path / "a" / "other.png", noise((20, 24, 3), seed=2))
    before = {p: p.read_bytes() for p in (first, second, other)}
    cases = [
        ((other, first, "--out", tmp_path / "a"), "would overwrite the input"),  # --out is the photos' folder
        ((first, second, "--out", tmp_path / "f"), "would both be written to"),  # two photos named `photo`
        ((first, first, "--out", tmp_path / "f"), "is given twice"),
    ]
    for args, needle in cases:
        code, out = invoke("inpaint", runs["rgb"], *args)
        assert code == 2 and needle in out and len(out.strip().splitlines()) == 1, out
        assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "other.png", "photo.jpg", "photo.png"]
        assert all(p.read_bytes() == data for p, data in before.items())
    mask = save(tmp_path / "b" / "other.png", np.full((20, 24), 255, dtype=np.uint8))
    code, out = invoke("inpaint", runs["rgb"], other, "--mask", mask, "--out", tmp_path / "b")
    assert code == 2 and f"{mask}: would overwrite the input" in out, out


def test_side_by_side_shows_input_filled_and_original(runs: dict[str, Path], tmp_path: Path) -> None:
    photo = noise((20, 30, 3), seed=7)
    code, out = invoke("inpaint", runs["rgb"], save(tmp_path / "p.png", photo), "--out", tmp_path / "f",
                       "--side-by-side")
    assert code == 0, out
    filled = np.asarray(Image.open(tmp_path / "f" / "p.png"))
    side = np.asarray(Image.open(tmp_path / "f" / "p.side-by-side.png"))
    assert side.shape == (20, 90, 3)
    hole = centre_hole(20, 30)
    assert np.array_equal(side[:, 30:60], filled) and np.array_equal(side[:, 60:], photo)
    assert np.array_equal(side[:, :30][~hole], photo[~hole]) and len(np.unique(side[:, :30][hole], axis=0)) == 1


def test_the_seam_fades_over_the_models_overlap_band(runs: dict[str, Path], tmp_path: Path) -> None:
    """At the model's own size the band is 2 px: a white photo filled with mid-gray (127.5) goes 2/3, 1/3, then 0 of
    the fill over the two pixels around the hole."""
    code, out = invoke("inpaint", runs["flat"], save(tmp_path / "w.png", np.full((MODEL, MODEL), 255, np.uint8)),
                       "--out", tmp_path / "f")
    assert code == 0, out
    column = np.asarray(Image.open(tmp_path / "f" / "w.png")).astype(int)[:, MODEL // 2]
    assert np.allclose(column[LO - 3 : LO + 1], [255, 212.5, 170, 128], atol=1)
    assert np.allclose(column[HI - 1 : HI + 3], [128, 170, 212.5, 255], atol=1)


def test_a_sideways_stored_photo_is_filled_and_written_upright(runs: dict[str, Path], tmp_path: Path) -> None:
    stored = noise((20, 30, 3), seed=8)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter clockwise, as phones store portraits
    Image.fromarray(stored).save(tmp_path / "portrait.png", exif=exif)
    code, out = invoke("inpaint", runs["rgb"], tmp_path / "portrait.png", "--hole", "2,3,6,6", "--out", tmp_path / "f")
    assert code == 0 and "(20x30 colour)" in out, out
    upright = np.rot90(stored, k=-1)
    filled = np.asarray(Image.open(tmp_path / "f" / "portrait.png"))
    hole = np.zeros((30, 20), dtype=bool)
    hole[3:9, 2:8] = True
    outside = ~near(hole, feather(out))
    assert filled.shape == upright.shape and np.array_equal(filled[outside], upright[outside])


def test_the_model_sees_an_unsquashed_square_around_the_hole(runs: dict[str, Path], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """On a ramp photo (value = y + x), the model's input rises as fast across as down: the window is scaled by the same
    factor both ways. The 30x15 hole's longer side maps onto the model's 12 px hole: an 80 px window, 2.5 px a pixel."""
    seen: list[torch.Tensor] = []
    forward = Generator.forward

    def spy(self: Generator, x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return forward(self, x)

    monkeypatch.setattr(Generator, "forward", spy)
    ys, xs = np.mgrid[:80, :150]
    code, out = invoke("inpaint", runs["rgb"], save(tmp_path / "ramp.png", (ys + xs).astype(np.uint8)),
                       "--hole", "60,32,30,15", "--out", tmp_path / "f")
    assert code == 0 and "hole upscaled 2.5x" in out, out
    model_input = (seen[0][0, 0].double() + 1) * 127.5  # back to photo levels
    across = model_input[3, 3:28].diff().mean()  # context rows above the centre hole (rows 10..21)
    down = model_input[2:8, 3].diff().mean()
    assert across == pytest.approx(2.5, rel=0.02) and down == pytest.approx(2.5, rel=0.02)
