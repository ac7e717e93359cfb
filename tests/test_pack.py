"""Packs: written chunk by chunk, resumable, memory-mapped, reused while the folder is unchanged, refused at the wrong
size."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import cebench.data.folder as folder
import cebench.data.pack as packing
from cebench.cli import app
from cebench.config import DataConfig
from cebench.data.folder import pack_or_load
from cebench.data.pack import IMAGES, INDEX, JOURNAL, Pack, pack_path
from cebench.data.source import load_split, open_pack
from cebench.errors import UserError


def make_folder(root: Path, n: int = 6, size: int = 32) -> None:
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size + i % 5, size, 3), dtype=np.uint8)).save(root / f"{i:03d}.png")
    (root / "broken.jpg").write_bytes(b"not a jpeg")


def test_folder_is_packed_once_and_reused_until_it_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "imgs"
    make_folder(root)
    first = folder.load_folder(root, "train", 32, 36, n_val=1, n_test=2)
    assert (pack_path(root, 32, 36) / INDEX).is_file()
    pack = Pack(pack_path(root, 32, 36))
    assert len(pack.files) == 6 and pack.skipped == ["broken.jpg"]

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded again although the pack is current")

    monkeypatch.setattr(folder, "_load_one", no_decoding)
    again = folder.load_folder(root, "train", 32, 36, n_val=1, n_test=2)
    assert torch.equal(first, again)

    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(root / "new.png")
    os.utime(root / "new.png")
    with pytest.raises(AssertionError, match="decoded again"):  # a changed folder is packed again
        folder.load_folder(root, "train", 32, 36, n_val=1, n_test=2)


def test_memory_map_holds_the_decoded_images(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    make_folder(root)
    pack = pack_or_load(root, 32, 40, out=tmp_path / "pack")[0]
    decoded = [folder.read_image(root / f"{i:03d}.png") for i in range(6)]
    direct = np.stack([folder.resize_center_crop(d, 40).permute(1, 2, 0).numpy() for d in decoded if d is not None])
    assert pack.array.shape == (6, 40, 40, 3)
    assert np.array_equal(pack.array, direct)
    raw = np.fromfile(tmp_path / "pack" / IMAGES, dtype=np.uint8).reshape(6, 40, 40, 3)  # the layout the header says
    assert np.array_equal(raw, direct)
    test = folder.load_folder(root, "test", 32, 40, n_val=0, n_test=7)
    assert torch.equal(test, torch.from_numpy(direct).permute(0, 3, 1, 2))
    pack.release(0, 6)  # pages dropped from memory are read back unchanged
    assert np.array_equal(pack.array, direct)
    assert torch.equal(pack.read([4, 1]), torch.from_numpy(direct[[4, 1]]).permute(0, 3, 1, 2))


@pytest.mark.parametrize("tear", [False, True])
def test_interrupted_packing_resumes_to_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tear: bool
) -> None:
    monkeypatch.setattr(packing, "CHUNK", 4)
    root = tmp_path / "imgs"
    make_folder(root, n=17)  # 18 files: 5 chunks, the unreadable one in the first
    whole = pack_or_load(root, 32, 32, out=tmp_path / "whole")[0]

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        pack_or_load(root, 32, 32, out=out, stop_after=3)
    assert not (out / INDEX).is_file()
    with pytest.raises(UserError, match="unfinished"):
        Pack(out)
    lines = (out / JOURNAL).read_text().splitlines()
    assert len(lines) == 1 + 3
    if tear:  # killed while writing: half a journal line, and bytes of the next chunk that no line vouches for
        (out / JOURNAL).write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
        with open(out / IMAGES, "ab") as f:
            f.write(b"\x07" * 1000)

    decoded: list[str] = []
    load_one = folder._load_one

    def counted(path: Path, size: int) -> np.ndarray | None:
        decoded.append(path.name)
        return load_one(path, size)

    monkeypatch.setattr(folder, "_load_one", counted)
    resumed, _, made = pack_or_load(root, 32, 32, out=out)
    assert made and len(decoded) == 18 - 4 * (2 if tear else 3)  # only the chunks not journalled are decoded again
    assert (out / IMAGES).read_bytes() == (tmp_path / "whole" / IMAGES).read_bytes()
    assert (out / INDEX).read_text() == (tmp_path / "whole" / INDEX).read_text()
    assert not (out / JOURNAL).exists()
    assert resumed.files == whole.files and len(resumed) == 17


def test_cli_pack(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    make_folder(root)
    first = CliRunner().invoke(app, ["data", "pack", str(root), "--size", "32"])
    assert first.exit_code == 0 and "6 images packed" in first.output
    second = CliRunner().invoke(app, ["data", "pack", str(root), "--size", "32"])
    assert "up to date" in second.output
    missing = CliRunner().invoke(app, ["data", "pack", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "does not exist" in missing.output

    out = tmp_path / "pack"
    made = CliRunner().invoke(app, ["data", "pack", str(root), "--size", "32", "--load-size", "32", "--out", str(out)])
    assert made.exit_code == 0, made.output
    header = json.loads((out / INDEX).read_text())
    assert header["count"] == 6 and header["image_size"] == 32 and header["load_size"] == 32
    assert header["channels"] == 3 and header["files"] == [f"{i:03d}.png" for i in range(6)]
    assert header["source"] == str(root.resolve()) and header["fingerprint"]

    other = tmp_path / "other"
    make_folder(other, n=2)
    for target, needle in ((out, "holds the pack of"), (root, "holds no pack and is not empty")):
        refused = CliRunner().invoke(app, ["data", "pack", str(other), "--size", "32", "--out", str(target)])
        assert refused.exit_code == 2 and needle in refused.output
        assert len(refused.output.strip().splitlines()) == 1
    assert Pack(out).files == header["files"]  # the refused pack left it alone


def test_pack_dataset_splits_as_its_folder(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    make_folder(root, n=12)
    pack_or_load(root, 32, 36, out=tmp_path / "pack")
    for split in ("train", "val", "test"):
        from_folder = load_split(DataConfig(name="folder", path=root, n_val=3, n_test=4, load_size=36), split, 32,
                                 torch.device("cpu"))
        from_pack = load_split(DataConfig(name="pack", path=tmp_path / "pack", n_val=3, n_test=4), split, 32,
                               torch.device("cpu"))
        assert torch.equal(from_folder, from_pack), split


def test_pack_of_another_size_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    make_folder(root)
    pack_or_load(root, 32, 32, out=tmp_path / "pack")
    with pytest.raises(UserError, match="made for 32 px images"):
        open_pack(DataConfig(name="pack", path=tmp_path / "pack"), 64)
    with pytest.raises(UserError, match="load size 40"):
        open_pack(DataConfig(name="pack", path=tmp_path / "pack", load_size=40), 32)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""
name: wrong
preset: landscape2023
data: {{name: pack, path: {tmp_path / 'pack'}, n_val: 0, n_test: 2}}
overrides: {{image_size: 64, width: 8, bottleneck_dim: 32}}
epochs: 1
batch_size: 2
""")
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(tmp_path / "runs"), "--device", "cpu"])
    assert result.exit_code == 2 and "made for 32 px images" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("layout", [False, True])
def test_probe_labels_of_a_pack_are_its_folders(tmp_path: Path, layout: bool) -> None:
    from cebench.probe.labels import load_labelled

    root = tmp_path / "imgs"
    for i, cls in enumerate(["cat", "dog"] * 5):
        split = ("test" if i < 4 else "train") + "/" if layout else ""
        path = root / f"{split}{cls}" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((32, 32, 3), i * 20, dtype=np.uint8)).save(path)
    pack_or_load(root, 32, 32, out=tmp_path / "pack")
    for split in ("train", "test"):
        kw = {"n_val": 0, "n_test": 4, "load_size": 32}
        from_folder = load_labelled(DataConfig(name="folder", path=root, **kw), split, 32, torch.device("cpu"))
        from_pack = load_labelled(DataConfig(name="pack", path=tmp_path / "pack", **kw), split, 32, torch.device("cpu"))
        assert torch.equal(from_folder.images, from_pack.images)
        assert from_folder.classes == from_pack.classes == {"class": ("cat", "dog")}
        assert all(torch.equal(from_folder.labels[k], from_pack.labels[k]) for k in from_folder.labels)
