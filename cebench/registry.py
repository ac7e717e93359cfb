"""Named variants, in the manner of timm: `register_variant` / `create_variant` / `list_variants`.

A variant is a name bound to a function returning a frozen `Variant`; its defaults are data. Specs start from one and
override fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from cebench.config import Variant
from cebench.errors import UserError

_VARIANTS: dict[str, Callable[[], Variant]] = {}


def register_variant(fn: Callable[[], Variant]) -> Callable[[], Variant]:
    """Decorator: register `fn` under its own name."""
    _VARIANTS[fn.__name__] = fn
    return fn


def list_variants() -> list[str]:
    return sorted(_VARIANTS)


def variant_doc(name: str) -> str:
    return (_VARIANTS[name].__doc__ or "").strip()


def create_variant(name: str, **overrides: Any) -> Variant:
    """The registered variant `name` with `overrides` applied (validated)."""
    if name not in _VARIANTS:
        raise UserError(f"unknown preset {name!r}; valid: {', '.join(list_variants())}")
    base = _VARIANTS[name]()
    try:
        return Variant.model_validate({**base.model_dump(), **overrides})
    except ValidationError as e:
        err = e.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:
            raise UserError(f"variant {name}: {msg}") from None
        field = ".".join(str(p) for p in err["loc"])
        raise UserError(f"{field}: {msg} (got {err.get('input')!r})") from None


@register_variant
def pathak2016() -> Variant:
    """Pathak et al. 2016, released code (train.lua)

    github.com/pathak22/context-encoder, centre inpainting: 128 px input, 64 px centre hole with a 4 px overlap band
    weighted 10x, fc bottleneck of 4000, patch critic, joint loss wtl2 = 0.999, Adam lr 2e-4 (D) and 2e-3 (G, 10x when
    joint), beta1 0.5, batch 64."""
    return Variant()


@register_variant
def pathak2016_l2() -> Variant:
    """Pathak et al. 2016, L2 loss only

    The released recipe with the reconstruction loss alone (the paper's 'L2 loss' column); G lr 2e-4 as in train.lua
    when wtl2 = 1."""
    return Variant(loss="l2", lambda_rec=1.0, lambda_adv=0.0, lr_g=2e-4)


@register_variant
def landscape2023() -> Variant:
    """Landscape inpainting reproduction (2023)

    'Landscape inpainting with convolutional autoencoders' (shared/seed/000_240228bdecf2340f.txt), section III:
    Pathak's architecture with a 78x78 context critic (64 px patch + 7 px real context), lambdas as Pathak,
    Adam lr 1e-4 (G) and 1e-5 (D), 100 epochs, colour; batch size not stated there, Pathak's 64 used."""
    return Variant(discriminator="context", lr_g=1e-4, lr_d=1e-5, epochs=100)


@register_variant
def landscape2023_gray() -> Variant:
    """Landscape inpainting reproduction, B&W

    The reproduction paper's grayscale model (its Table I 'Ours, B&W'): as landscape2023 on BT.601 luma."""
    return landscape2023().model_copy(update={"channels": "gray"})


@register_variant
def channelwise2016() -> Variant:
    """Pathak et al. 2016, channel-wise bottleneck

    Section 3.1: the channel-wise fully connected layer + 1x1 conv (described in the paper, never released)."""
    return Variant(bottleneck="channelwise")
