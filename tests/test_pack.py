from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cebench.data.folder as folder
from cebench.data.pack import load_pack, pack_path


def make_folder(root: Path, n: int = 6) -> None:
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)).save(root / f"{i}.png")
    (root / "broken.jpg").write_bytes(b"not a jpeg")


def test_folder_is_packed_once_and_reused_until_it_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "imgs"
    make_folder(root)
    first = folder.load_folder(root, "train", 32, 36, n_val=1, n_test=2)
    assert pack_path(root, 36).is_file()
    pack = load_pack(root, 36)
    assert pack is not None and len(pack.files) == 6 and pack.skipped == ["broken.jpg"]

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded again although the pack is current")

    monkeypatch.setattr(folder, "_decode_all", no_decoding)
    again = folder.load_folder(root, "train", 32, 36, n_val=1, n_test=2)
    assert torch.equal(first, again)

    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(root / "new.png")
    os.utime(root / "new.png")
    assert load_pack(root, 36) is None  # a changed folder invalidates the pack
    with pytest.raises(AssertionError, match="decoded again"):
        folder.load_folder(root, "train", 32, 36, n_val=1, n_test=2)


def test_pack_rows_equal_direct_decoding(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    make_folder(root)
    test = folder.load_folder(root, "test", 32, 40, n_val=0, n_test=7)
    direct = torch.stack([folder.resize_center_crop(folder.read_image(root / f"{i}.png"), 40) for i in range(6)])
    assert torch.equal(test, direct)


def test_cli_pack(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cebench.cli import app

    root = tmp_path / "imgs"
    make_folder(root)
    first = CliRunner().invoke(app, ["data", "pack", str(root), "--size", "32"])
    assert first.exit_code == 0 and "6 images packed" in first.output
    second = CliRunner().invoke(app, ["data", "pack", str(root), "--size", "32"])
    assert "up to date" in second.output
    missing = CliRunner().invoke(app, ["data", "pack", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
