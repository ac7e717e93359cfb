"""Procedural landscape scenes: the embedded default dataset.

Image i is a pure function of (seed, indices[i], size): every random number comes from a counter-based integer hash of
(seed, index, stream, element), never from a torch.Generator, so an image is the same whichever batch or chunk it is
rendered in. The scene is painted back to front: sky gradient, sun and clouds (at half resolution: all soft), 1-3
mountain ridges with atmospheric perspective, a far treeline, an optional lake mirroring everything above it, then the
ground with tree silhouettes, and a little grain.

Bit-exactness across batch layouts: torch's CPU kernels run a vectorised body and a scalar tail whose position depends
on tensor size and thread split. Single IEEE ops (+ - * / sqrt, min/max, clamp, where, floor) round the same in both,
but fused or transcendental ones (lerp, addcmul, exp, pow, sin) can differ by an ulp and flip a uint8. So the per-image
maths uses only exact ops, one arithmetic op per torch call (which also keeps every full-resolution pass explicit:
speed here is counted in passes over (B, C, S, S) tensors).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import torch
import torch.nn.functional as F

_M32 = 0xFFFFFFFF
_IntOrTensor = TypeVar("_IntOrTensor", int, torch.Tensor)
_PIXELS_PER_CHUNK = 1 << 20  # 64 images at 128x128: 12.6 MB per RGB float buffer; bigger chunks gain nothing

# Palette rows: sky top, sky at horizon, sun, lit cloud, cloud shadow, scene light (tints land and trees), and the
# distance haze that far ridges fade into (bluer than the horizon by day, mauve at dusk: aerial perspective).
_SKY, _HORIZON, _SUN, _CLOUD, _CLOUD_SHADOW, _LIGHT, _HAZE = range(7)
_PALETTES = torch.tensor(
    [
        [  # day
            [0.20, 0.42, 0.82], [0.68, 0.80, 0.94], [1.00, 0.97, 0.88], [0.98, 0.98, 1.00],
            [0.70, 0.74, 0.84], [1.00, 1.00, 0.98], [0.60, 0.70, 0.88],
        ],
        [  # dusk
            [0.16, 0.13, 0.38], [0.98, 0.58, 0.32], [1.00, 0.80, 0.45], [0.98, 0.60, 0.48],
            [0.38, 0.26, 0.40], [0.62, 0.46, 0.46], [0.60, 0.40, 0.52],
        ],
        [  # overcast
            [0.52, 0.55, 0.60], [0.80, 0.81, 0.83], [0.96, 0.95, 0.90], [0.86, 0.87, 0.89],
            [0.50, 0.52, 0.56], [0.72, 0.74, 0.76], [0.70, 0.72, 0.76],
        ],
    ]
)  # fmt: skip
_ROCK = torch.tensor([[0.36, 0.38, 0.46], [0.42, 0.36, 0.30], [0.22, 0.34, 0.24], [0.30, 0.30, 0.36]])
_GRASS = torch.tensor([[0.24, 0.44, 0.14], [0.46, 0.52, 0.20], [0.56, 0.48, 0.28], [0.14, 0.30, 0.12]])
_TREE = (0.07, 0.17, 0.09)
_WATER = (0.10, 0.20, 0.26)


# ---------------------------------------------------------------------------------------------------- random numbers
def _mix32(x: _IntOrTensor) -> _IntOrTensor:  # x: int, or int64 tensor, holding values in [0, 2^32)
    """lowbias32 finaliser (Wellons). Inputs are < 2^32 so >> never sees a sign bit; an int64 tensor product may wrap
    past 2^63, which leaves its low 32 bits (all we keep) exact, as they are for Python ints."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def _image_keys(seed: int, indices: torch.Tensor) -> torch.Tensor:
    """One 32-bit key per image from (seed, index); both fold their high words in, so 64-bit values stay distinct."""
    s = _mix32(_mix32((seed & _M32) ^ 0x5BD1E995) ^ ((seed >> 32) & _M32))
    return _mix32(_mix32((indices & _M32) ^ s) ^ ((indices >> 32) & _M32))


def _uniform(keys: torch.Tensor, stream: int, *shape: int) -> torch.Tensor:
    """(B, *shape) float32 uniforms in [0, 1): element j of image b is mix(mix(j ^ mix(stream)) ^ key_b).

    Each call is ~25 small torch ops, so layers draw what they need in one call and slice it.
    """
    n = 1
    for d in shape:
        n *= d
    salt = _mix32((stream * 0x9E3779B9 + 0x632BE5AB) & _M32)
    ctr = _mix32(torch.arange(n, device=keys.device, dtype=torch.int64) ^ salt)  # shared by all images
    h = _mix32(ctr.unsqueeze(0) ^ keys.unsqueeze(1))
    return ((h >> 8).to(torch.float32) * (1.0 / (1 << 24))).view(keys.shape[0], *shape)


def _grain(keys: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 1, S, S) uniforms for pixel grain: a window of one long hashed strip at a per-image offset (one copy pass)."""
    strip = _uniform(keys[:1] * 0, 3, (1 << 16) + size * size)[0]  # the strip depends on nothing but the size
    offset = _mix32(keys ^ 0x2545F491) >> 16
    return strip.unfold(0, size * size, 1)[offset].view(-1, 1, size, size)


# ------------------------------------------------------------------------------------------------------------ noise
def _upsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of (B, C, h, w) to (size, size); one-channel planes take torch's fast path."""
    b, c = x.shape[:2]
    y = F.interpolate(x.reshape(b * c, 1, *x.shape[2:]), size=(size, size), mode="bilinear", align_corners=False)
    return y.view(b, c, size, size)


def _fbm2d(keys: torch.Tensor, stream: int, base: tuple[int, int], octaves: int, gain: torch.Tensor, size: int
           ) -> torch.Tensor:  # fmt: skip
    """Value-noise fBm (B, 1, size, size) in ~[0, 1]: each octave doubles the grid, added to the upsampled sum."""
    grids = [(base[0] << o, base[1] << o) for o in range(octaves)]
    draws = _uniform(keys, stream, sum(h * w for h, w in grids)).split([h * w for h, w in grids], dim=1)
    g = gain.view(-1, 1, 1, 1)
    acc, amp, total = draws[0].view(-1, 1, *grids[0]), torch.ones_like(g), torch.ones_like(g)
    for grid, draw in zip(grids[1:], draws[1:], strict=True):
        acc = F.interpolate(acc, size=grid, mode="bilinear", align_corners=False)
        amp = amp * g
        acc += draw.view(-1, 1, *grid) * amp
        total = total + amp
    return _upsample(acc / total, size)


def _fbm1d(keys: torch.Tensor, stream: int, points: int, octaves: int, gain: torch.Tensor, size: int) -> torch.Tensor:
    """1-D fBm (B, 1, 1, size) rescaled to span [0, 1] per image, so every profile has real peaks and valleys."""
    counts = [((points - 1) << o) + 1 for o in range(octaves)]  # align_corners=True: keep samples, add midpoints
    draws = _uniform(keys, stream, sum(counts)).split(counts, dim=1)
    g = gain.view(-1, 1, 1)
    acc, amp = draws[0].view(-1, 1, counts[0]), torch.ones_like(g)
    for n, draw in zip(counts[1:], draws[1:], strict=True):
        acc = F.interpolate(acc, size=n, mode="linear", align_corners=True)
        amp = amp * g
        acc += (draw.view(-1, 1, n) - 0.5) * amp
    acc = F.interpolate(acc, size=size, mode="linear", align_corners=True)
    lo, hi = acc.amin(dim=2, keepdim=True), acc.amax(dim=2, keepdim=True)
    return ((acc - lo) / (hi - lo + 1e-6)).unsqueeze(2)


# ----------------------------------------------------------------------------------------------------------- layers
@dataclass
class _Canvas:
    """The image being painted plus a same-sized scratch buffer. Fresh multi-MB temporaries cost page faults on every
    allocation (a third of the run time when each layer made its own colour map), so colour maps go to the scratch."""

    img: torch.Tensor  # (B, 3, S, S) float32 in [0, 1]
    scratch: torch.Tensor  # (B, 3, S, S) float32, contents undefined
    ys: torch.Tensor  # (1, 1, S, 1) pixel-centre row coordinates

    def paint(self, alpha: torch.Tensor, colour: torch.Tensor, ramp: torch.Tensor | None = None,
              t: torch.Tensor | None = None) -> None:  # fmt: skip
        """img <- img + alpha * (colour + ramp * t - img), in place; exact single ops (see the module docstring)."""
        s = self.scratch
        if ramp is None or t is None:
            torch.sub(colour, self.img, out=s)
        else:
            torch.mul(t, ramp, out=s).add_(colour).sub_(self.img)
        self.img += s.mul_(alpha)

    def cover(self, top: torch.Tensor) -> torch.Tensor:
        """Anti-aliased mask of the pixels below a per-column silhouette top (B, 1, 1, S): 1 below, 0 above."""
        return (self.ys - (top - 0.5)).clamp_(0.0, 1.0)

    def subset(self, mask: torch.Tensor, paint: Callable[..., None], *per_image: torch.Tensor) -> None:
        """paint(canvas, *per_image) on just the images where mask holds: skips work, changes no pixel's value."""
        if bool(mask.all()):
            paint(self, *per_image)
        elif bool(mask.any()):
            idx = mask.nonzero().squeeze(1)
            sub = _Canvas(self.img[idx], self.scratch[: idx.numel()], self.ys)
            paint(sub, *(t[idx] for t in per_image))
            self.img[idx] = sub.img


def _sky(keys: torch.Tensor, pal: torch.Tensor, kind: torch.Tensor, horizon: torch.Tensor, size: int) -> torch.Tensor:
    """Gradient, sun with glow, and clouds, rendered at half resolution (nothing up here is sharp) and upsampled."""
    res = max(1, (size + 1) // 2)
    ys = (torch.arange(res, device=keys.device, dtype=torch.float32) + 0.5) * (size / res)
    xs, ys = ys.view(1, 1, 1, res), ys.view(1, 1, res, 1)
    h = horizon.view(-1, 1, 1, 1)
    t = (ys / h).clamp_(0.0, 1.0)
    t = t * t * (3.0 - t * 2.0)  # smoothstep: the deep colour lingers overhead, brightening fast near the horizon
    top, low = pal[:, _SKY, :, None, None], pal[:, _HORIZON, :, None, None]
    rows = top + (low - top) * t  # (B, 3, res, 1)

    # Sun: most clear skies, few overcast ones; dusk suns sit near the horizon. Glow is a cheap rational falloff.
    u = _uniform(keys, 10, 8)
    present = _has_sun(keys, kind).float().view(-1, 1, 1, 1)
    lo = torch.where(kind == 1, 0.55, 0.15)
    sy = (horizon * (lo + u[:, 1] * (0.9 - lo))).view(-1, 1, 1, 1)
    sx = ((0.1 + u[:, 2] * 0.8) * size).view(-1, 1, 1, 1)
    r = ((0.03 + u[:, 3] * 0.03) * size).view(-1, 1, 1, 1)
    gr = r * (2.5 + u[:, 4].view(-1, 1, 1, 1) * 3.0)
    dx, dy = xs - sx, ys - sy
    d2 = dx * dx + dy * dy
    glow = (gr * gr) / (d2 + gr * gr)
    sun = glow * glow * 0.55 + ((r - d2.sqrt_()) * (res / size) + 0.5).clamp_(0.0, 1.0)
    sky = _Canvas(rows + pal[:, _SUN, :, None, None] * sun.mul_(present), torch.empty(0), ys)
    sky.scratch = torch.empty_like(sky.img)

    # Clouds: thresholded fBm on a grid twice as fine vertically as horizontally (wide, flat cloud banks).
    f = _fbm2d(keys, 11, (4, 2), 5, 0.45 + u[:, 5] * 0.2, res)
    thr = torch.where(kind == 2, 0.30, 0.36 + u[:, 6] * 0.26).view(-1, 1, 1, 1)  # lower threshold: more cloud
    fade = ((h - ys) / (h * 0.35)).clamp_(0.0, 1.0) * (0.6 + u[:, 7].view(-1, 1, 1, 1) * 0.35)  # thin at horizon
    f = f.sub_(thr)
    alpha = (f * 4.0).clamp_(0.0, 1.0).mul_(fade)
    shade = f.mul_(2.5).clamp_(0.0, 1.0)  # thick cores are darker, like cloud bases
    lit, dark = pal[:, _CLOUD, :, None, None], pal[:, _CLOUD_SHADOW, :, None, None]
    sky.paint(alpha, lit, dark - lit, shade)
    return _upsample(sky.img, size)


def _ridge(cv: _Canvas, keys: torch.Tensor, pal: torch.Tensor, water: torch.Tensor, k: int) -> None:
    """Ridge k (0 = farthest) of n: farther ridges are taller, paler and closer to the haze colour; mist in valleys."""
    size = cv.img.shape[-1]
    u = _uniform(keys, 30, 18)  # 6 shared by the ridges of an image, then 4 per ridge
    uk = u[:, 6 + 4 * k : 10 + 4 * k]
    n = 1 + (u[:, 0] * 3).floor()
    haze_far, haze_near = 0.55 + u[:, 1] * 0.2, 0.05 + u[:, 2] * 0.3
    depth = ((n - 1 - k) / (n - 1).clamp(min=1)).view(-1, 1, 1, 1)  # 1 for the farthest ridge, 0 for the nearest
    haze = haze_near.view(-1, 1, 1, 1) + (haze_far - haze_near).view(-1, 1, 1, 1) * depth
    p = _fbm1d(keys, 40 + k, 4 + k, 5, 0.3 + u[:, 3] * 0.25, size)  # gain: higher is craggier
    p = p + (p * p - p) * u[:, 4].view(-1, 1, 1, 1)  # towards p^2: peaks stay sharp, valleys broaden
    height = (0.08 + depth * 0.2 + uk[:, 0].view(-1, 1, 1, 1) * 0.12) * size
    base = (water - (0.01 + uk[:, 1] * 0.04) * size).view(-1, 1, 1, 1)
    top = base - p * height
    rock = (_ROCK.to(keys.device)[(u[:, 5] * 4).long()] * pal[:, _LIGHT] * (0.75 + uk[:, 2:3] * 0.4))[:, :, None, None]
    d = cv.ys - (top - 0.5)
    alpha = d.clamp(0.0, 1.0)
    # Haze grows with distance (per ridge) and, as valley mist, with depth below the ridge line (per pixel).
    t = d.mul_(uk[:, 3].view(-1, 1, 1, 1) * 0.5 * (1.0 - haze) / (height + 1.0)).add_(haze).clamp_(max=0.92)
    cv.paint(alpha, rock, pal[:, _HAZE, :, None, None] - rock, t)


def _trees(keys: torch.Tensor, stream: int, count: int, density: torch.Tensor, scale: torch.Tensor, size: int
           ) -> torch.Tensor:  # fmt: skip
    """Spiky 1-D height profile (B, 1, 1, S): max over cone (conifer) or dome (broadleaf) silhouettes."""
    u = _uniform(keys, stream, 5, count)
    xs = torch.arange(size, device=keys.device, dtype=torch.float32).add_(0.5).view(1, 1, size)
    h = scale.view(-1, 1) * (0.5 + u[:, 1]) * size * (u[:, 0] < density.view(-1, 1)).float()
    w = h * (0.22 + u[:, 2] * 0.25) + 0.5
    d = ((xs - (u[:, 3] * size).unsqueeze(2)).abs() / w.unsqueeze(2)).clamp_(max=1.0)
    shape = torch.where((u[:, 4] < 0.7).unsqueeze(2), 1.0 - d, (1.0 - d * d).sqrt_())
    return (shape * h.unsqueeze(2)).amax(dim=1).view(-1, 1, 1, size)


def _lake(cv: _Canvas, keys: torch.Tensor, pal: torch.Tensor, water: torch.Tensor) -> None:
    """Mirror the scene above the waterline into the rows below it: darkened, tinted, rippled sideways per row."""
    b, _, size, _ = cv.img.shape
    u = _uniform(keys, 70, 2 + size)
    w = water.view(-1, 1)
    row = torch.arange(size, device=keys.device, dtype=torch.float32).view(1, size) + 0.5
    depth = ((row - w) / size).clamp_(min=0.0)  # (B, S): 0 at the waterline, growing towards the viewer
    jitter = u[:, 2:] * 2.0 - 1.0
    shift = (jitter * depth * (size * (0.08 + u[:, :1] * 0.15))).round_().long()
    src_row = (w * 2.0 - row).floor_().clamp_(0, size - 1).long()  # mirror about the waterline
    col = torch.arange(size, device=keys.device).view(1, 1, size)
    idx = (col + shift.unsqueeze(2)).clamp_(0, size - 1) + (src_row * size).unsqueeze(2)
    s = cv.scratch.view(b, 3, size * size)
    torch.gather(cv.img.view(b, 3, size * size), 2, idx.view(b, 1, -1).expand(b, 3, -1), out=s)
    # Near the viewer the water shows its own colour more than the reflection (Fresnel, roughly).
    fres = (depth * 1.5 + 0.2 + u[:, 1:2] * 0.2).clamp_(max=0.8).view(b, 1, size, 1)
    tint = torch.tensor(_WATER, device=keys.device).view(1, 3, 1, 1) * pal[:, _LIGHT, :, None, None]
    water_col = cv.scratch.mul_((1.0 - fres) * 0.8).add_(tint * fres)
    cv.img += water_col.sub_(cv.img).mul_(cv.cover(water.view(-1, 1, 1, 1)))


def _ground(cv: _Canvas, keys: torch.Tensor, pal: torch.Tensor, ground: torch.Tensor) -> None:
    """Grass or forest band with tree silhouettes along its undulating top edge."""
    size = cv.img.shape[-1]
    u = _uniform(keys, 80, 6)
    wave = _fbm1d(keys, 81, 3, 3, torch.full_like(u[:, 0], 0.5), size) - 0.5
    top = ground.view(-1, 1, 1, 1) + wave * ((0.02 + u[:, 0].view(-1, 1, 1, 1) * 0.05) * size)
    trees = _trees(keys, 90, 40, _tree_density(keys), 0.04 + u[:, 2] * 0.1, size)
    light, haze = pal[:, _LIGHT], pal[:, _HORIZON, :, None, None]
    tree_col = (torch.tensor(_TREE, device=keys.device) * (0.7 + u[:, 3:4] * 0.6) * light)[:, :, None, None]
    cv.paint(cv.cover(top - trees), tree_col + (haze - tree_col) * 0.12)
    grass = (_GRASS.to(keys.device)[(u[:, 4] * 4).long()] * light)[:, :, None, None]
    # Paler towards the far edge (per row, from the mean edge: cheap), darker underfoot; fBm patches for fields.
    g = ground.view(-1, 1, 1, 1)
    far = (1.0 - (cv.ys - g) / (size - g + 1.0)).clamp_(0.0, 1.0)  # (B, 1, S, 1)
    tex = _fbm2d(keys, 82, (6, 2), 4, 0.5 + u[:, 5] * 0.2, size)
    shade = tex.mul_((1.0 - far * 0.3) * 0.7).add_(0.45 + far * 0.2)
    cv.paint(cv.cover(top), haze * (far * far * 0.35), grass, shade)


# ------------------------------------------------------------------------------------ scene attributes (the labels)
# The rendering and `attributes` read these latent draws through the same functions, so a label cannot drift from the
# pixels it describes.
def _kind(u: torch.Tensor) -> torch.Tensor:
    return ((u[:, 0] * 4).floor().long() - 1).clamp_(min=0)  # 0 day (twice as likely), 1 dusk, 2 overcast


def _has_lake(u: torch.Tensor) -> torch.Tensor:
    return u[:, 1] < 0.35


def _n_ridges(keys: torch.Tensor) -> torch.Tensor:
    return 1 + (_uniform(keys, 30, 1)[:, 0] * 3).floor()  # the same draw _ridge makes


def _tree_density(keys: torch.Tensor) -> torch.Tensor:
    return _uniform(keys, 80, 6)[:, 1] * 1.1 - 0.1  # the same draw _ground makes; <= 0: no trees at all


def _has_sun(keys: torch.Tensor, kind: torch.Tensor) -> torch.Tensor:
    return _uniform(keys, 10, 8)[:, 0] < torch.where(kind == 2, 0.15, 0.7)  # the same draw _sky makes


ATTRIBUTES = {
    "palette": ("day", "dusk", "overcast"),
    "lake": ("no", "yes"),
    "ridges": ("1", "2", "3"),
    "trees": ("sparse", "dense"),
    "sun": ("no", "yes"),
}


def attributes(seed: int, indices: torch.Tensor) -> dict[str, torch.Tensor]:
    """The latent scene attributes of images (seed, indices[i]) as int64 class indices into `ATTRIBUTES[name]`.

    Drawn from the same hashed stream as the pixels, so they are as deterministic as the images and need no rendering.
    `trees` splits the ground's tree density at its median (0.45 of the drawn range); `sun` is whether a sun is drawn
    (ridges may hide part of it).
    """
    keys = _image_keys(int(seed), indices.to(dtype=torch.int64))
    u = _uniform(keys, 1, 6 + 21)
    kind = _kind(u)
    return {
        "palette": kind,
        "lake": _has_lake(u).long(),
        "ridges": _n_ridges(keys).long() - 1,
        "trees": (_tree_density(keys) >= 0.45).long(),
        "sun": _has_sun(keys, kind).long(),
    }


# ------------------------------------------------------------------------------------------------------ public API
def _render(keys: torch.Tensor, size: int, scratch: torch.Tensor) -> torch.Tensor:
    """Float (B, 3, S, S) images, 0-255 scale with grain and a +0.5 offset, so truncation to uint8 rounds."""
    dev = keys.device
    u = _uniform(keys, 1, 6 + 21)
    kind, lake = _kind(u), _has_lake(u)
    pal = _PALETTES.to(dev)[kind] * (0.9 + u[:, 6:].view(-1, 7, 3) * 0.2)  # every colour tinted per image
    water = torch.where(lake, 0.40 + u[:, 2] * 0.2, 0.48 + u[:, 2] * 0.22) * size  # waterline / horizon row
    ground = water + torch.where(lake, 0.12 + u[:, 3] * 0.2, u[:, 3] * 0.05) * size

    ys = torch.arange(size, device=dev, dtype=torch.float32).add_(0.5).view(1, 1, size, 1)
    cv = _Canvas(_sky(keys, pal, kind, water, size), scratch, ys)
    n_ridges = _n_ridges(keys)
    for k in range(3):  # images with fewer ridges skip the nearer slots (a third of the ridge work, on average)
        cv.subset(n_ridges > k, partial(_ridge, k=k), keys, pal, water)
    far_trees = _trees(keys, 60, 48, u[:, 4], 0.012 + u[:, 5] * 0.02, size)  # a low treeline on the far shore
    far_col = torch.tensor(_TREE, device=dev) * pal[:, _LIGHT]
    far_col = far_col + (pal[:, _HAZE] - far_col) * 0.35
    cv.paint(cv.cover(water.view(-1, 1, 1, 1) - far_trees), far_col[:, :, None, None])
    cv.subset(lake, _lake, keys, pal, water)
    _ground(cv, keys, pal, ground)

    img = cv.img.mul_(255.0)
    return img.add_(_grain(keys, size).mul_(6.0).sub_(2.5))  # grain of +-3 levels, mean +0.5


def generate(seed: int, indices: torch.Tensor, size: int = 128, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 tensor (N, 3, size, size) of landscape images, image i determined only by (seed, indices[i], size).

    On CPU, chunks are rendered by up to torch.get_num_threads() Python threads, each running torch single-threaded;
    torch's thread count is set to 1 for the duration of the call and restored after it.
    """
    if indices.dim() != 1:
        raise ValueError(f"indices must be 1-D, got shape {tuple(indices.shape)}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    dev = torch.device(device) if device is not None else indices.device
    keys = _image_keys(int(seed), indices.to(device=dev, dtype=torch.int64))
    n = keys.shape[0]
    out = torch.empty((n, 3, size, size), dtype=torch.uint8, device=dev)
    # On a GPU, larger chunks amortise the hundreds of small kernel launches per chunk (512 images at 128 px).
    chunk = max(1, _PIXELS_PER_CHUNK * (1 if dev.type == "cpu" else 16) // (size * size))
    spans = [(s, min(s + chunk, n)) for s in range(0, n, chunk)]

    def render(part: list[tuple[int, int]]) -> None:
        scratch = torch.empty((min(chunk, n), 3, size, size), device=dev)
        with torch.no_grad():  # grad mode is per thread
            for s, e in part:
                out[s:e] = _render(keys[s:e], size, scratch[: e - s]).clamp_(0.0, 255.0)  # uint8 copy truncates

    if dev.type != "cpu":
        render(spans)
        return out
    # Why not torch's own intra-op threads: each of the hundreds of small ops per chunk ends in an OpenMP barrier, and
    # when another process holds a core that barrier waits out scheduler slices: 20-50x slower on a busy 2-core
    # machine. Whole chunks per thread need no barriers: ~1.7x faster than one thread when idle, ~1x when busy.
    threads = torch.get_num_threads()
    workers = max(1, min(threads, len(spans)))
    torch.set_num_threads(1)
    try:
        if workers == 1:
            render(spans)
        else:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(render, [spans[i::workers] for i in range(workers)]))
    finally:
        torch.set_num_threads(threads)
    return out


def generate_range(seed: int, start: int, count: int, size: int = 128, device: torch.device | str | None = None
                   ) -> torch.Tensor:  # fmt: skip
    """Images start, start+1, ..., start+count-1 of the dataset for `seed`."""
    return generate(seed, torch.arange(start, start + count, dtype=torch.int64), size, device)
