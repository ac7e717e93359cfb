"""Validated configuration: a `Variant` (model, loss, mask, optimiser), the data it trains on, and ablation specs.

All models are frozen pydantic models that reject unknown fields, so a typo in a spec is an error, never a silent default.
Every field of `Variant` and `DataConfig` becomes a column of the results table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Frozen(BaseModel):
    # inf and nan are never meaningful settings (an infinite learning rate passes `gt=0`).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# A name becomes a folder under the runs root: it must not be able to escape or alias it ('.', '..', '.hidden').
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class Variant(Frozen):
    """One trainable context-encoder configuration. Defaults are Pathak's released centre-inpainting recipe."""

    # model
    image_size: int = Field(128, description="side of the square input image (power of two >= 32)")
    channels: Literal["rgb", "gray"] = "rgb"
    bottleneck: Literal["fc", "channelwise"] = "fc"
    bottleneck_dim: int = Field(4000, gt=0, description="width of the fc bottleneck (Pathak's README: 4000)")
    width: int = Field(64, gt=0, description="base number of filters (nef = ngf = ndf in Pathak's code)")
    # loss
    loss: Literal["l2", "joint"] = "joint"
    lambda_rec: float = Field(0.999, ge=0, description="weight of the reconstruction loss (Pathak's wtl2)")
    lambda_adv: float = Field(0.001, ge=0, description="weight of the adversarial loss (1 - wtl2)")
    overlap_weight: float = Field(10.0, ge=0, description="loss weight of the overlap band (Pathak's overlapL2Weight)")
    discriminator: Literal["patch", "context"] = "patch"
    context_px: int = Field(7, ge=0, description="real context around the hole seen by the `context` critic, at 128 px")
    # mask
    mask: Literal["center", "block", "region"] = "center"
    overlap: int = Field(4, ge=0, description="visible band inside the region, weighted in the loss (overlapPred)")
    fill: Literal["mean", "zero", "noise"] = "mean"
    # pretext (feature learning, `cebench probe`): what the encoder learns from
    pretext: Literal["inpaint", "autoencoder", "none"] = Field(
        "inpaint", description="inpaint: fill the mask's hole; autoencoder: reconstruct the whole image, nothing hidden "
        "(Pathak's autoencoder baseline); none: no training, the initialised network (random init), epochs set to 0")
    # optimisation
    lr_g: float = Field(2e-3, gt=0)
    lr_d: float = Field(2e-4, gt=0)
    beta1: float = Field(0.5, ge=0, lt=1)
    batch_size: int = Field(64, gt=0)
    lr_scaling: Literal["none", "sqrt", "linear"] = Field(
        "none", description="large-batch rule: lr x (batch_size / 64) ** (0, 1/2, 1); sqrt is the usual rule for Adam")
    epochs: int = Field(25, ge=0, description="0 only with pretext none, which sets it")

    @field_validator("image_size")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        # The hole is half the image side, and SSIM's 11x11 window must fit inside it.
        if v < 32 or v & (v - 1):
            raise ValueError("must be a power of two >= 32 (32, 64, 128, 256, ...); SSIM needs an 11 px hole")
        return v

    @model_validator(mode="before")
    @classmethod
    def _untrained_has_no_epochs(cls, data: Any) -> Any:
        # An axis `pretext: [inpaint, none]` shares the spec's epochs; the random-init run trains none of them.
        if isinstance(data, dict) and data.get("pretext") == "none":
            return {**data, "epochs": 0}
        return data

    @model_validator(mode="after")
    def _epochs_only_untrained_zero(self) -> Variant:
        if self.epochs == 0 and self.pretext != "none":
            raise ValueError("epochs must be > 0 (an untrained run is `pretext: none`)")
        return self

    @model_validator(mode="after")
    def _overlap_fits(self) -> Variant:
        if self.mask == "center" and 2 * self.overlap >= self.image_size // 2:
            raise ValueError(f"overlap {self.overlap} leaves no hole in a {self.image_size // 2} px centre region")
        return self

    @property
    def n_channels(self) -> int:
        return 3 if self.channels == "rgb" else 1

    @property
    def lr_factor(self) -> float:
        """Multiplier of lr_g and lr_d for this batch size: Pathak's rates were tuned at batch 64."""
        power = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}[self.lr_scaling]
        return (self.batch_size / 64) ** power


def known_variant_fields(v: dict[str, Any]) -> dict[str, Any]:
    """Validator for mappings keyed by variant field (overrides, axes): an unknown key names the valid ones."""
    unknown = sorted(set(v) - set(Variant.model_fields))
    if unknown:
        raise ValueError(f"unknown variant field {unknown[0]!r}; valid: {', '.join(Variant.model_fields)}")
    return v


class DataConfig(Frozen):
    """Where images come from. `landscapes` is procedural and embedded; `folder` reads any image tree; `pack` reads a
    pack written by `cebench data pack` (split by its files' names as the folder was, training split streamed when
    large)."""

    name: Literal["landscapes", "folder", "pack"] = "landscapes"
    path: Path | None = None
    n_train: int | None = Field(15000, gt=0, description="training images (folder: cap; None = all)")
    n_val: int = Field(150, ge=0, description="validation images, disjoint from test (per-epoch curves, tuning)")
    n_test: int = Field(150, gt=0, description="test images (the reproduction paper holds out 150)")
    seed: int = Field(0, description="landscapes: the scene seed; folder: unused")
    load_size: int | None = Field(None, description="folder: short side before cropping (default size*350/128)")
    # How the training split is held, not what it is: a streamed and a loaded pack train the same batches, so this is
    # left out of dumps (spec.json, results rows) and a run may change it on --resume.
    stream: Literal["auto", "always", "never"] = Field(
        "auto", exclude=True, description="pack: stream the training split from disk by chunks (auto: when larger "
        "than 4 GiB) or load it whole onto the device (never)")

    @model_validator(mode="after")
    def _path_for_folder(self) -> DataConfig:
        if self.name in ("folder", "pack") and self.path is None:
            raise ValueError(f"data.path is required when data.name is '{self.name}'")
        if self.stream != "auto" and self.name != "pack":
            raise ValueError(f"data.stream applies to data.name 'pack' only (pack a folder with `cebench data pack "
                             f"FOLDER --out DIR`), not to '{self.name}'")
        return self


class ProbeConfig(Frozen):
    """How `cebench probe` measures what a run's encoder learned: labelled data, tasks, and the two probes."""

    data: DataConfig | None = Field(None, description="labelled data; default: the runs' own (landscapes: its scenes)")
    tasks: list[str] | None = Field(None, description="default: the data's tasks (landscapes: ridges, trees; folder: class)")
    n_train: int = Field(2000, gt=0, description="labelled training images (folder: a cap)")
    n_val: int = Field(500, gt=0, description="validation images: choose the linear probe's L2 strength")
    n_test: int = Field(1000, gt=0, description="test images: only ever scored")
    layers: list[str] | None = Field(None, description="encoder layers conv1..convN for the linear probe; default convN")
    kinds: tuple[Literal["linear", "finetune"], ...] = Field(("linear", "finetune"), min_length=1)
    finetune_epochs: int = Field(5, gt=0)
    finetune_lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, gt=0)


class Spec(Frozen):
    """An ablation: a base preset, fixed overrides, axes whose product is the grid of runs, and seeds."""

    name: str = Field(pattern=NAME_PATTERN, description="folder under the runs root: letters, digits, _ . -")
    description: str = ""
    preset: str = "pathak2016"
    data: DataConfig = DataConfig()
    overrides: dict[str, Any] = Field(default_factory=dict)
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    epochs: int | None = Field(None, gt=0)
    batch_size: int | None = Field(None, gt=0)
    exclude: list[dict[str, Any]] = Field(default_factory=list, description="grid points to skip, as in a CI matrix: "
                                          "a point is skipped when it has every field=value of one entry")
    probe: ProbeConfig | None = Field(None, description="`cebench run` also probes the trained encoders")

    @field_validator("overrides", "axes")
    @classmethod
    def _known_fields(cls, v: dict[str, Any]) -> dict[str, Any]:
        return known_variant_fields(v)

    @field_validator("exclude")
    @classmethod
    def _known_exclude_fields(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for entry in v:
            known_variant_fields(entry)
        return v

    @field_validator("axes")
    @classmethod
    def _nonempty_axes(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            if not values:
                raise ValueError(f"axis {key!r} has no values")
            repeated = _repeated(values)
            if repeated is not None:
                raise ValueError(f"axis {key!r} lists {repeated!r} twice: it would train the same runs twice")
        return v

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, v: list[int]) -> list[int]:
        repeated = _repeated(v)
        if repeated is not None:
            raise ValueError(f"seed {repeated} is listed twice: it would train the same runs twice")
        return v


def _repeated(values: list[Any]) -> Any:
    """The first value that occurs twice in `values` (compared as text, as run ids are), or None."""
    seen: set[str] = set()
    for value in values:
        if str(value) in seen:
            return value
        seen.add(str(value))
    return None
