"""Metrics that need pretrained networks: FID and KID (per set of images, Inception-v3 pool features) and LPIPS (per
image, AlexNet). Opt-in and offline: they run only when the weights are already on disk (a folder given by the user, or
torch's hub cache); otherwise each is absent with a one-line reason. Nothing is downloaded, and nothing stands in for a
missing network.

- Features: torchvision's Inception-v3 ImageNet weights (`inception_v3_google-0cc3c7bd.pth`), the 2048-d pool
  features of images resized to 299 px. These are not the TensorFlow weights of the original FID code, so values are
  comparable within cebench, not with published FIDs.
- FID: the Fréchet distance between Gaussians fitted to the two feature sets (mean, covariance with ddof 1).
- KID: the unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3, averaged over random subsets.
- LPIPS: the `lpips` package (AlexNet, v0.1 linear layers shipped in the package), with torchvision's AlexNet weights
  (`alexnet-owt-7be5be79.pth`) from the same folder or cache; inputs scaled to [-1, 1].
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

INCEPTION_FILE: Final = "inception_v3_google-0cc3c7bd.pth"
ALEXNET_FILE: Final = "alexnet-owt-7be5be79.pth"
INCEPTION_SIZE = 299  # input side of Inception-v3 (FID's convention)
IMAGENET_MEAN: Final = (0.485, 0.456, 0.406)
IMAGENET_STD: Final = (0.229, 0.224, 0.225)


def find_weights(filename: str, folder: Path | None = None) -> Path | None:
    """`filename` in `folder` (or its `checkpoints/`), else in torch's hub cache; None when it is nowhere on disk."""
    places = [folder, folder / "checkpoints"] if folder is not None else []
    places.append(Path(torch.hub.get_dir()) / "checkpoints")
    return next((p / filename for p in places if p is not None and (p / filename).is_file()), None)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2), with symmetric eigendecompositions (the
    matrix square root of two covariances, without the complex round-off of a general `sqrtm`)."""
    w1, v1 = np.linalg.eigh(sigma1)
    root1 = (v1 * np.sqrt(np.clip(w1, 0, None))) @ v1.T
    inner = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    cross = np.sqrt(np.clip(inner, 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * cross)


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID of two (N, D) feature sets."""
    return frechet_distance(features_a.mean(0), np.cov(features_a, rowvar=False),
                            features_b.mean(0), np.cov(features_b, rowvar=False))


def kid(features_a: np.ndarray, features_b: np.ndarray, n_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """KID (mean, std over subsets): unbiased MMD^2 with the kernel (x.y / d + 1)^3 on subsets of both sets."""
    rng = np.random.default_rng(seed)
    m = min(subset_size, len(features_a), len(features_b))
    d = features_a.shape[1]
    values = []
    for _ in range(n_subsets):
        x = features_a[rng.choice(len(features_a), m, replace=False)]
        y = features_b[rng.choice(len(features_b), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        off = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(off - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


def inception(weights: Path) -> nn.Module:
    """Inception-v3 with torchvision's ImageNet weights from `weights`, returning the 2048-d pool features."""
    from torchvision.models import inception_v3

    net = inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net.fc = nn.Identity()
    return net.eval()


@torch.no_grad()
def inception_features(net: nn.Module, images: torch.Tensor, batch_size: int = 32) -> np.ndarray:
    """(N, 2048) features of (N, 3, H, W) images in [0, 1] (gray images repeated to 3 channels), resized to 299."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].float().cpu().expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False,
                          antialias=True)
        out.append(net((x - mean) / std).double().numpy())
    return np.concatenate(out)


@contextmanager
def _hub_dir(weights: Path) -> Iterator[None]:
    """Point torch's hub cache at the folder holding `weights` (as `<dir>/checkpoints/<file>`) for the block."""
    before = torch.hub.get_dir()
    torch.hub.set_dir(str(weights.parent.parent))
    try:
        yield
    finally:
        torch.hub.set_dir(before)


def lpips_model(alexnet: Path) -> nn.Module:
    """The `lpips` package's AlexNet LPIPS, its backbone loaded from `alexnet` (never downloaded)."""
    import lpips

    if alexnet.parent.name != "checkpoints":  # torchvision looks for <hub dir>/checkpoints/<file>
        raise FileNotFoundError(f"{alexnet}: put it in a folder named checkpoints/")
    with _hub_dir(alexnet):
        return lpips.LPIPS(net="alex", verbose=False).eval()


@torch.no_grad()
def lpips_scores(model: nn.Module, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image LPIPS (N,) of images in [0, 1] (gray repeated to 3 channels)."""
    p = pred.float().cpu().expand(-1, 3, -1, -1) * 2 - 1
    t = target.float().cpu().expand(-1, 3, -1, -1) * 2 - 1
    return model(p, t).flatten().double()


def availability(folder: Path | None) -> dict[str, Path | str]:
    """Per metric ('fid_kid', 'lpips'): the weights file to use, or the one-line reason it cannot run."""
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    where = f"{folder} or {hub}" if folder is not None else f"{hub} (or give a folder)"
    found: dict[str, Path | str] = {}
    inception_file = find_weights(INCEPTION_FILE, folder)
    found["fid_kid"] = inception_file or f"FID/KID not computed: no {INCEPTION_FILE} (torchvision Inception-v3) in {where}"
    alexnet_file = find_weights(ALEXNET_FILE, folder)
    if importlib.util.find_spec("lpips") is None:
        found["lpips"] = "LPIPS not computed: the lpips package is not installed (pip install 'cebench[perceptual]')"
    elif alexnet_file is None:
        found["lpips"] = f"LPIPS not computed: no {ALEXNET_FILE} (torchvision AlexNet) in {where}"
    elif alexnet_file.parent.name != "checkpoints":
        found["lpips"] = f"LPIPS not computed: {alexnet_file} must be in a folder named checkpoints/"
    else:
        found["lpips"] = alexnet_file
    return found
