"""Ablation specs: YAML files validated into `Spec`, expanded into one `RunPlan` per grid point and seed."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from cebench.config import Spec, Variant
from cebench.errors import UserError
from cebench.registry import create_variant


@dataclass(frozen=True)
class RunPlan:
    run_id: str
    variant: Variant
    seed: int
    axes: dict[str, Any]


def read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None


def validate(model: type[BaseModel], payload: Any, source: Path) -> Any:
    """Validate `payload` against `model`; the first problem becomes one line naming the file and field."""
    if not isinstance(payload, dict):
        raise UserError(f"{source}: expected a mapping of fields at the top level")
    try:
        return model.model_validate(payload)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "spec"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            valid = _fields_at(model, err["loc"][:-1])
            msg = f"unknown field; valid: {', '.join(valid)}"
        raise UserError(f"{source}: {field}: {msg}") from None


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The fields valid at `loc`: descends through nested models, skipping mapping keys and list indices."""
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            continue
        annotation = field.annotation
        nested = [a for a in (annotation, *getattr(annotation, "__args__", ())) if isinstance(a, type)]
        model = next((a for a in nested if issubclass(a, BaseModel)), model)
    return list(model.model_fields)


def load_spec(path: Path) -> Spec:
    spec: Spec = validate(Spec, read_yaml(path), path)
    plans = expand(spec, source=path)  # fail now, before any training, if a grid point is invalid
    if spec.data.name == "landscapes" and spec.data.n_train is not None:
        check_batches(plans, spec.data.n_train, f"{path}: data.n_train")
    if spec.probe is not None:  # and if the probe names a task or layer that does not exist
        from cebench.probe.runs import check_probe

        try:
            check_probe(spec.probe, [(p.variant, spec.data) for p in plans])
        except UserError as e:
            raise UserError(f"{path}: {e}") from None
    return spec


def check_batches(plans: list[RunPlan], n_train: int, source: str) -> None:
    """A batch larger than the training split would be cut silently, and the row would record the wrong size."""
    for plan in plans:
        if plan.variant.batch_size > n_train:
            raise UserError(f"{source}: batch_size {plan.variant.batch_size} (run {plan.run_id}) is larger than the "
                            f"{n_train} training images; lower batch_size or add images")


def expand(spec: Spec, source: Path | None = None) -> list[RunPlan]:
    """The product of the axes times the seeds, in spec order; run ids name the axis values and the seed."""
    fixed = dict(spec.overrides)
    if spec.epochs is not None:
        fixed["epochs"] = spec.epochs
    if spec.batch_size is not None:
        fixed["batch_size"] = spec.batch_size
    keys = list(spec.axes)
    plans = []
    for values in itertools.product(*(spec.axes[k] for k in keys)):
        point = dict(zip(keys, values, strict=True))
        if any(all({**fixed, **point}.get(k) == v for k, v in entry.items()) for entry in spec.exclude):
            continue
        try:
            variant = create_variant(spec.preset, **{**fixed, **point})
        except UserError as e:
            raise UserError(f"{source or spec.name}: {e}") from None
        label = "-".join(f"{k}={v}" for k, v in point.items()) or spec.preset
        plans += [RunPlan(f"{label}-seed{seed}", variant, seed, point) for seed in spec.seeds]
    return plans
