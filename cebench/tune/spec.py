"""Tune specs: durations, search ranges, the `TuneSpec` model and its loader."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from cebench.config import NAME_PATTERN, DataConfig, Frozen, Variant, known_variant_fields
from cebench.errors import UserError, choices
from cebench.registry import create_variant
from cebench.spec import read_yaml, validate

Direction = Literal["maximize", "minimize"]
TUNABLE = tuple(k for k, f in Variant.model_fields.items() if f.annotation is float)
_HARNESS = ("l1", "l2", "psnr", "ssim", "sharpness")
_HIGHER_IS_BETTER = {"psnr", "ssim", "sharpness"}
# Objective metrics and their default directions: every harness key on the validation split, and the training time.
METRICS: dict[str, Direction] = {
    **{f"val_{region}{m}": "maximize" if m in _HIGHER_IS_BETTER else "minimize"
       for region in ("", "luma_", "image_", "image_luma_") for m in _HARNESS},
    "train_time_s": "minimize",
}


def parse_duration(value: str | float) -> float:
    """Seconds from 90, '90s', '30m', '2h', '1h30m', '1.5d'."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().lower().replace(" ", "")
        if not re.fullmatch(r"(\d+(\.\d+)?[smhd])+|\d+(\.\d+)?", text):
            raise ValueError(f"{value!r} is not a duration; expected e.g. 90s, 30m, 2h or 1h30m")
        unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
        seconds = sum(float(n) * unit[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)([smhd]?)", text))
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(f"{value!r}: a timeout must be positive")
    return seconds


class Range(Frozen):
    """A float search range, inclusive; `log` samples uniformly in log space."""

    low: float = Field(allow_inf_nan=False)
    high: float = Field(allow_inf_nan=False)
    log: bool = False

    @field_validator("high")
    @classmethod
    def _nonempty(cls, high: float, info: ValidationInfo) -> float:
        low = info.data.get("low")
        if low is not None and not low < high:
            raise ValueError(f"empty or inverted range: low {low:g} must be below high {high:g}")
        return high

    @field_validator("log")
    @classmethod
    def _positive_for_log(cls, log: bool, info: ValidationInfo) -> bool:
        if log and info.data.get("low", 1.0) <= 0:
            raise ValueError(f"a log-scale range needs low > 0 (got low {info.data['low']:g})")
        return log


class TuneSpec(Frozen):
    """A search: base preset + fixed overrides, data, budget, objective(s) on the validation split, search space."""

    name: str = Field(pattern=NAME_PATTERN, description="folder under the runs root: letters, digits, _ . -")
    description: str = ""
    preset: str = "pathak2016"
    data: DataConfig = Field(default_factory=lambda: DataConfig.model_validate({}))
    overrides: dict[str, Any] = Field(default_factory=dict)
    seed: int = Field(0, description="training seed of every trial, and the sampler's seed")
    trials: int = Field(20, gt=0, description="trials the study should hold (all workers, all runs)")
    timeout: float | str | None = Field(None, description="stop starting trials after this long, e.g. 2h")
    objective: list[str] = Field(default_factory=lambda: ["val_psnr"], min_length=1, description="one or several")
    direction: list[Direction] | None = Field(None, description="one per objective; default: the metric's natural one")
    pruner: Literal["median", "hyperband", "none"] | None = Field(
        None, description="stops poor trials; default median with one objective, none with several")
    startup_trials: int = Field(5, ge=0, description="random trials before TPE models the space and pruning starts")
    storage: str | None = Field(None, description="study storage URL (default sqlite:///runs/<name>/study.db)")
    space: dict[str, Range] = Field(min_length=1)
    tie_lambdas: bool = Field(False, description="lambda_rec = 1 - lambda_adv, as Pathak's wtl2")

    @field_validator("overrides")
    @classmethod
    def _known_fields(cls, v: dict[str, Any]) -> dict[str, Any]:
        return known_variant_fields(v)

    @field_validator("timeout")
    @classmethod
    def _duration(cls, v: float | str | None) -> float | None:
        return None if v is None else parse_duration(v)

    @field_validator("objective", "direction", mode="before")
    @classmethod
    def _listed(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("objective")
    @classmethod
    def _known_metrics(cls, names: list[str]) -> list[str]:
        for name in names:
            if name not in METRICS:
                raise ValueError(f"unknown objective {name!r}; valid: val_l1, val_l2, val_psnr, val_ssim, "
                                 "val_sharpness (also with val_luma_, val_image_, val_image_luma_), train_time_s")
        if len(set(names)) != len(names):
            raise ValueError("objectives must be distinct metrics")
        return names

    @field_validator("direction")
    @classmethod
    def _one_per_objective(cls, v: list[Direction] | None, info: ValidationInfo) -> list[Direction] | None:
        n = len(info.data.get("objective") or [])
        if v is not None and n and len(v) != n:
            raise ValueError(f"give one direction per objective ({n})")
        return v

    @field_validator("space", mode="before")
    @classmethod
    def _tunable(cls, v: Any) -> Any:
        for name, rng in (v.items() if isinstance(v, dict) else ()):
            if name not in TUNABLE:
                raise ValueError(f"unknown parameter {name!r}; valid (float variant fields): {choices(TUNABLE)}")
            extra = sorted(set(rng) - set(Range.model_fields)) if isinstance(rng, dict) else []
            if extra:  # here rather than by pydantic: cebench.spec.validate names fields of models, not of mappings
                raise ValueError(f"{name}: unknown field {extra[0]!r}; valid: {choices(Range.model_fields)}")
        return v

    @field_validator("tie_lambdas")
    @classmethod
    def _tied(cls, tie: bool, info: ValidationInfo) -> bool:
        space: dict[str, Range] = info.data.get("space") or {}
        fixed = set(info.data.get("overrides") or {})
        if tie and "lambda_adv" not in space:
            raise ValueError("needs lambda_adv in space (lambda_rec = 1 - lambda_adv)")
        if tie and ("lambda_rec" in space or "lambda_rec" in fixed):
            raise ValueError("lambda_rec follows lambda_adv; remove it from space and overrides")
        if tie and space["lambda_adv"].high > 1:
            raise ValueError(f"space.lambda_adv.high {space['lambda_adv'].high:g} > 1 would make lambda_rec negative")
        return tie

    @property
    def objectives(self) -> list[str]:
        return list(self.objective)

    @property
    def directions(self) -> list[Direction]:
        return list(self.direction) if self.direction is not None else [METRICS[m] for m in self.objective]

    @property
    def timeout_s(self) -> float | None:
        return None if self.timeout is None else float(self.timeout)

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1

    @property
    def pruning(self) -> Literal["median", "hyperband", "none"]:
        return self.pruner or ("none" if self.multi else "median")

    def variant(self, params: dict[str, float]) -> tuple[Variant, dict[str, Any]]:
        """The variant of a trial and every override it applies to the preset (fixed, searched, tied)."""
        overrides = {**self.overrides, **params}
        if self.tie_lambdas and "lambda_adv" in params:
            overrides["lambda_rec"] = 1.0 - params["lambda_adv"]
        return create_variant(self.preset, **overrides), overrides


def load_tune_spec(path: Path) -> TuneSpec:
    """Read and validate a tune spec; every problem is one line naming the file and the field."""
    spec: TuneSpec = validate(TuneSpec, read_yaml(path), path)
    clash = sorted(set(spec.space) & set(spec.overrides))
    if clash:
        raise UserError(f"{path}: overrides.{clash[0]}: also searched in space; keep it in one of them")
    try:
        base, _ = spec.variant({})
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    for name, rng in spec.space.items():  # both ends of every range must make a valid variant
        for end in ("low", "high"):
            try:
                spec.variant({name: getattr(rng, end)})
            except UserError as e:
                raise UserError(f"{path}: space.{name}.{end}: {str(e).removeprefix(name + ': ')}") from None
    if any(m.startswith("val_") for m in spec.objectives) and spec.data.n_val == 0:
        raise UserError(f"{path}: data.n_val: the objective {spec.objectives[0]} needs a validation split (n_val > 0)")
    if spec.multi and spec.pruner not in (None, "none"):
        raise UserError(f"{path}: pruner: {spec.pruner}: Optuna prunes single-objective studies only; with "
                        f"{len(spec.objectives)} objectives use pruner: none (or leave it out)")
    if spec.pruner == "hyperband" and base.epochs < 2:
        raise UserError(f"{path}: pruner: hyperband needs at least 2 epochs per trial (got {base.epochs})")
    return spec
