"""Perceptual and distribution metrics: the Fréchet distance and KID against direct computations, the opt-in loading of
weights from disk, and their absence (with the reason) where the weights are not there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console
from scipy import linalg

import cebench.perceptual
import cebench.score
from cebench.perceptual import INCEPTION_FILE, availability, fid, frechet_distance, inception_features, kid
from cebench.score import print_summary, score_dirs


def random_features(seed: int, n: int = 300, d: int = 24) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (n, d)) @ rng.normal(0, 0.5, (d, d)) + rng.normal(0, 1, d)


def test_frechet_distance_matches_a_direct_scipy_computation() -> None:
    a, b = random_features(0), random_features(1)
    mu1, mu2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    direct = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(linalg.sqrtm(s1 @ s2)).real
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(direct, rel=1e-9)
    assert fid(a, b) == pytest.approx(direct, rel=1e-9) and fid(b, a) == pytest.approx(direct, rel=1e-9)
    assert abs(fid(a, a)) < 1e-8


def test_kid_is_the_unbiased_mmd_with_the_cubic_kernel() -> None:
    a, b = random_features(2, n=40), random_features(3, n=40)
    d = a.shape[1]

    def k(x: np.ndarray, y: np.ndarray) -> float:
        return float((x @ y / d + 1) ** 3)

    m = len(a)
    xx = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(a[i], b[j]) for i in range(m) for j in range(m)) / (m * m)
    mean, std = kid(a, b, n_subsets=3, subset_size=m)  # whole sets: every subset is a permutation, the same value
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-9) and std == pytest.approx(0, abs=1e-9)
    same = np.random.default_rng(9).normal(0, 1, (200, d)), np.random.default_rng(10).normal(0, 1, (200, d))
    other = np.random.default_rng(11).normal(0.5, 1, (200, d))
    assert abs(kid(*same, subset_size=100)[0]) < 0.2 * kid(same[0], other, subset_size=100)[0]


def folders(tmp_path: Path, n: int = 3) -> tuple[Path, Path]:
    pred, target = tmp_path / "pred", tmp_path / "target"
    pred.mkdir(), target.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        image = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
        Image.fromarray(image).save(target / f"{i}.png")
        Image.fromarray(np.clip(image.astype(int) + rng.integers(-20, 20, image.shape), 0, 255).astype(np.uint8)).save(
            pred / f"{i}.png")
    return pred, target


def test_without_weights_the_columns_are_absent_with_one_line_reasons(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    found = availability(tmp_path / "nothing-here")
    assert all(isinstance(v, str) and "\n" not in v and "not computed" in v for v in found.values())
    df = score_dirs(*folders(tmp_path), perceptual=True)
    assert "lpips" not in df and "sets" not in df.attrs and len(df.attrs["absent"]) == 2
    console = Console(record=True, width=300)
    print_summary(df, console)
    text = console.export_text()
    assert "FID/KID not computed" in text and "LPIPS not computed" in text and "cebench[perceptual]" in text


@pytest.mark.slow
def test_fid_runs_from_a_weights_file_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loading path, with a weights file made here (random Inception-v3: the values mean nothing)."""
    from torchvision.models import inception_v3

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(cebench.perceptual, "INCEPTION_SIZE", 80)  # the smallest side it takes is 75: a fast test
    calls: list[tuple[torch.Tensor, np.ndarray]] = []

    def spy(net: torch.nn.Module, images: torch.Tensor) -> np.ndarray:
        calls.append((images, inception_features(net, images)))
        return calls[-1][1]

    monkeypatch.setattr(cebench.score, "inception_features", spy)
    fitted: list[tuple[np.ndarray, np.ndarray, float]] = []

    def fid_spy(a: np.ndarray, b: np.ndarray) -> float:  # FID itself is tested above; here: what it is given
        fitted.append((a, b, fid(a, b)))
        return fitted[-1][2]

    monkeypatch.setattr(cebench.score, "fid", fid_spy)
    torch.manual_seed(0)
    weights = tmp_path / "weights"
    weights.mkdir()
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), weights / INCEPTION_FILE)
    pred, target = folders(tmp_path, n=2)
    sets = score_dirs(pred, target, perceptual=True, weights=weights).attrs["sets"]
    (composited, a), (truth, b) = calls
    images = [torch.from_numpy(np.array(Image.open(d / f"{i}.png"))).permute(2, 0, 1).double() / 255
              for d in (pred, target) for i in range(2)]
    inside = torch.zeros(48, 48, dtype=torch.bool)
    inside[12:36, 12:36] = True
    assert torch.equal(truth, torch.stack(images[2:]))
    assert torch.equal(composited, torch.where(inside, torch.stack(images[:2]), truth))
    ((fa, fb, value),) = fitted
    assert np.array_equal(fa, a) and np.array_equal(fb, b) and a.shape == (2, 2048)
    assert sets["n"] == 2 and sets["fid"] == value > 0
